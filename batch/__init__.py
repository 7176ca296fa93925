"""popbatch scoring: sources, polars preprocessing, onnxruntime inference, sinks.

This package is the scoring path. It must never import TensorFlow,
scikit-learn or xgboost: a scoring install has none of them.
"""

__version__ = "0.1.0"

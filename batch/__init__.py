"""popbatch scoring: sources, polars preprocessing, onnxruntime inference, sinks.

This package is the scoring path. It must never import TensorFlow,
scikit-learn or xgboost: a scoring install has none of them. It imports only
:mod:`popbatch.core` of the rest of popbatch; the CLI (``cli``, ``commands``)
sits on top of everything and wires the parts together.
"""

"""popbatch scoring: sources, polars preprocessing, onnxruntime inference, sinks.

This package is the scoring path. It must never import TensorFlow,
scikit-learn, xgboost or pyspark, nor unpickle: a scoring install has none of
them. It imports only :mod:`popbatch.core` of the rest of popbatch; training,
export and the CLI (:mod:`popbatch.cli`) sit above it and import it.
"""

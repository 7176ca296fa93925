"""Turning a trained stack into one ONNX graph plus its manifest, and proving parity.

Importing this package is cheap; the converters (onnx, skl2onnx, tf2onnx,
onnxmltools) are imported inside the functions that need them.
"""

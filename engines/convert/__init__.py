"""Owned converters from published model formats to ONNX (numpy + onnx only; no TensorFlow, no torch)."""

"""On-device runtime: loads an exported bundle and runs it with LiteRT or ONNX Runtime. Never imports TensorFlow."""

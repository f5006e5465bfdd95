"""On-device side of edgemtl: runs exported model files with LiteRT or ONNX Runtime. Never imports TensorFlow."""

"""Export: TFLite / ONNX / C artifacts, each verified by the parity gate and packed as a bundle."""

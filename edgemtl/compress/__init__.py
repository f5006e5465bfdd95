"""Compression of a trained run: distillation into a small student, pruning, quantization-aware training."""

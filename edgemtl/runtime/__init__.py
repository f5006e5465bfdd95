"""The on-device runtime: load a bundle and predict from raw inputs. Imports numpy, PIL, LiteRT and ONNX Runtime
only — never TensorFlow — so the light install (`pip install edgemtl`) is enough.

    from edgemtl.runtime import load
    model = load("runs/fashion/exports/student-tflite-int8")
    model.predict(image="shoe.jpg", title="Nike Men Black Shoes")
"""
from .model import BundleModel, load

__all__ = ["BundleModel", "load"]

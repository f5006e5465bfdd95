"""Raw inputs (paths, bytes, PIL images, sample arrays, strings, numbers) -> model input arrays, from a bundle's
manifest. The conversions are the modality kinds' (edgemtl.kinds), the code training decoded its data with."""
from pathlib import Path

import numpy as np

from .. import kinds


class InputPreparer:
    """Turns one raw value per input into the model's array for that input (no batch dimension)."""

    def __init__(self, entry: dict, bundle_dir: Path):
        self.entry, self.name = entry, entry["name"]
        self.kind = entry["modality"]  # the modality's name (public: examples and callers branch on it)
        self.modality = kinds.modality(self.kind)  # what that modality means: its ModalityKind
        self.pre = entry.get("preprocess", {})
        self.shape = tuple(entry["shape"][1:])
        self.dtype = np.dtype(entry["dtype"])
        self.resources = self.modality.runtime_resources(entry, Path(bundle_dir))

    def __call__(self, value, rate=None) -> np.ndarray:
        return self.modality.prepare(self.entry, value, rate, self.dtype, **self.resources)

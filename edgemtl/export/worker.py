"""Child process for conversions that can crash (full-int8 calibration): python -m edgemtl.export.worker JOB.json.

A segfault here becomes an error message in the parent instead of killing the export.
"""
import json
import sys
from pathlib import Path

import numpy as np


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    from ..models.build import load_model
    from ..recipe import load_recipe
    from .converters import ConversionJob
    from .formats import FORMATS
    from .signature import exported_model

    model = exported_model(load_model(job["model"]), load_recipe(job["recipe"]))
    with np.load(job["samples"]) as z:
        arrays = {k: z[k] for k in z.files}
    n = len(next(iter(arrays.values())))
    samples = [{k: v[i:i + 1] for k, v in arrays.items()} for i in range(n)]
    workdir = Path(job["out"]).parent
    convert = FORMATS[job.get("format", "tflite")].load_converter()
    content = convert(ConversionJob(model=model, precision=job["precision"], workdir=workdir, samples=tuple(samples),
                                   keep_float=tuple(job["keep_float"])))
    Path(job["out"]).write_bytes(content)


if __name__ == "__main__":
    main(sys.argv[1])

"""Child process for conversions that can crash (full-int8 calibration): python -m edgemtl.export.worker.

A segfault here becomes an error message in the parent instead of killing the export. One child serves all of a
model's such conversions, one job file per line of its stdin, each answered with one line ("ok", or "error: " and
the exception's last line): starting a child costs Python, TensorFlow's import and the model's load (several seconds
against a few for the conversion itself), and the precision search converts a model several times. A child that
crashes answers nothing: the parent reports that job and starts a fresh child for the next one.

`python -m edgemtl.export.worker JOB.json` converts that one job and exits.
"""
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np

OK, ERROR = "ok", "error: "


class _Loaded:
    """The last model and calibration rows this child loaded, reused by the next job that names the same files."""

    def __init__(self):
        self.model_key = self.samples_key = None
        self.model = self.samples = None

    def model_for(self, job: dict):
        from ..models.build import load_model
        from ..recipe import load_recipe
        from .signature import exported_model

        path = Path(job["model"])
        key = (str(path), path.stat().st_mtime_ns, path.stat().st_size, job["recipe"])
        if key != self.model_key:
            self.model = exported_model(load_model(job["model"]), load_recipe(job["recipe"]))
            self.model_key = key
        return self.model

    def samples_for(self, job: dict) -> tuple:
        path = Path(job["samples"])
        key = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
        if key != self.samples_key:
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
            n = len(next(iter(arrays.values())))
            self.samples = tuple({k: v[i:i + 1] for k, v in arrays.items()} for i in range(n))
            self.samples_key = key
        return self.samples


def convert(job_path: str, loaded: _Loaded) -> None:
    from .converters import ConversionJob
    from .formats import FORMATS

    job = json.loads(Path(job_path).read_text())
    model, samples = loaded.model_for(job), loaded.samples_for(job)
    workdir = Path(job["out"]).parent
    content = FORMATS[job.get("format", "tflite")].load_converter()(
        ConversionJob(model=model, precision=job["precision"], workdir=workdir, samples=samples,
                      keep_float=tuple(job["keep_float"])))
    Path(job["out"]).write_bytes(content)


def serve() -> None:
    """Answer one job per stdin line on the original stdout; anything a library prints goes to stderr."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # before the first job: a child started ahead (Converter.prepare) imports TensorFlow while the parent converts
    from ..models.build import load_model  # noqa: F401
    from . import converters, tflite  # noqa: F401

    loaded = _Loaded()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            convert(line.strip(), loaded)
        except Exception as e:  # converters raise many exception types; the parent names the artifact
            traceback.print_exc()
            last = traceback.format_exception_only(type(e), e)[-1].strip().replace("\n", " ")
            replies.write(f"{ERROR}{last}\n")
            continue
        replies.write(f"{OK}\n")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        convert(sys.argv[1], _Loaded())
    else:
        serve()

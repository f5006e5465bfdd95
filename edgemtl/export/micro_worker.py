"""Child process of the parity gate for micro files: python -m edgemtl.export.micro_worker JOB.json.

Runs one candidate in TFLite Micro's Python interpreter (the firmware's C++ kernels; never TensorFlow): finds the
smallest tensor arena it runs in, then answers every test row, one row per invoke, in an interpreter with exactly
that arena. A file TFLM refuses (a missing kernel, a bad flatbuffer) becomes `load_error`; one that aborts it kills
this process only.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..kinds.audio import PCM16_FULL_SCALE
from .micro import pcm16

ARENA_ALIGN = 16  # the arena figure is a multiple of this (TFLM aligns its tensors to 16 bytes)
ARENA_MAX = 64 << 20  # bytes: a larger model is no microcontroller model


def _interpreter(model: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=int(arena))


def _details(interpreter, count: int, get) -> list[dict]:
    return [get(i) for i in range(count)]


def _runs(model: bytes, arena: int, n_inputs: int) -> bool:
    """Whether TFLM allocates and invokes the model (zeros in) within `arena` bytes."""
    try:
        interpreter = _interpreter(model, arena)
        for i in range(n_inputs):
            d = interpreter.get_input_details(i)
            interpreter.set_input(np.zeros(d["shape"], d["dtype"]), i)
        interpreter.invoke()
        return True
    except (RuntimeError, ValueError):
        return False


def _tflm_says(model: bytes, n_inputs: int) -> str:
    """What TFLM printed (to the C stderr) when the model failed with the largest arena: the kernel that refused."""
    with tempfile.TemporaryFile(mode="w+b") as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            _runs(model, ARENA_MAX, n_inputs)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        lines = [line.strip() for line in capture.read().decode(errors="replace").splitlines() if line.strip()]
    return "; ".join(lines[-2:]) or "no message"


def smallest_arena(model: bytes, n_inputs: int) -> int:
    """The smallest arena (a multiple of ARENA_ALIGN) TFLM runs the model in: double until it runs, then bisect.
    Raises RuntimeError with TFLM's message when it does not run even in ARENA_MAX bytes."""
    if not _runs(model, ARENA_MAX, n_inputs):
        raise RuntimeError(_tflm_says(model, n_inputs))
    high = max(ARENA_ALIGN, (len(model) // ARENA_ALIGN) * ARENA_ALIGN)
    while not _runs(model, high, n_inputs):
        high *= 2
    low = 0  # known not to run (an empty arena never does)
    while high - low > ARENA_ALIGN:
        mid = (low + high) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if mid <= low:
            break
        low, high = (low, mid) if _runs(model, mid, n_inputs) else (mid, high)
    return high


def _quantize(value: np.ndarray, d: dict) -> np.ndarray:
    q = d["quantization_parameters"]
    dtype = np.dtype(d["dtype"])
    if dtype.kind == "i" and len(q["scales"]) and q["scales"][0]:  # quantized (raw values of a standardised input too)
        info = np.iinfo(dtype)
        scaled = np.round(value.astype(np.float32) / q["scales"][0] + q["zero_points"][0])
        return np.clip(scaled, info.min, info.max).astype(dtype)
    if dtype == np.int16 and value.dtype.kind == "f":  # audio: int16 PCM (no quantization parameters)
        return pcm16(value)
    return value.astype(dtype)


def _dequantize(value: np.ndarray, d: dict) -> np.ndarray:
    q = d["quantization_parameters"]
    if len(q["scales"]) and q["scales"][0]:
        return (value.astype(np.float32) - q["zero_points"][0]) * q["scales"][0]
    return value.astype(np.float32)


def io_facts(d: dict) -> dict:
    q = d["quantization_parameters"]
    scale = float(q["scales"][0]) if len(q["scales"]) else 0.0
    zero = int(q["zero_points"][0]) if len(q["zero_points"]) else 0
    if np.dtype(d["dtype"]) == np.int16 and not scale:  # int16 PCM audio: sample = q / 32768
        scale = 1.0 / PCM16_FULL_SCALE
    return {"dtype": np.dtype(d["dtype"]).name, "scale": scale, "zero_point": zero}


def run_rows(model: bytes, arena: int, x: dict, input_names: list, output_names: list) -> tuple[dict, dict]:
    """(outputs by name over every row, I/O facts by name), one row per invoke."""
    interpreter = _interpreter(model, arena)
    ins = _details(interpreter, len(input_names), interpreter.get_input_details)
    outs = _details(interpreter, len(output_names), interpreter.get_output_details)
    n = len(next(iter(x.values())))
    answers = {name: [] for name in output_names}
    for row in range(n):
        for i, (name, d) in enumerate(zip(input_names, ins)):
            interpreter.set_input(_quantize(x[name][row:row + 1], d).reshape(d["shape"]), i)
        interpreter.invoke()
        for i, (name, d) in enumerate(zip(output_names, outs)):
            answers[name].append(_dequantize(interpreter.get_output(i), d).reshape(1, -1))
        interpreter.reset()  # stateful kernels (variables) start every row afresh
    facts = {name: io_facts(d) for name, d in [*zip(input_names, ins), *zip(output_names, outs)]}
    return {k: np.concatenate(v) for k, v in answers.items()}, facts


def main(job_path: str) -> None:
    from .micro import signature_order, tflm_version

    job = json.loads(Path(job_path).read_text())
    model = Path(job["model"]).read_bytes()
    result: dict = {"runtime": "tflm", "threads": 1}
    input_names, output_names = signature_order(model)
    try:
        arena = smallest_arena(model, len(input_names))
        with np.load(job["inputs"]) as z:
            x = {k: z[k] for k in z.files}
        outputs, io = run_rows(model, arena, x, input_names, output_names)
    except (RuntimeError, ValueError) as e:
        message = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        result["load_error"] = f"{Path(job['model']).name}: TFLite Micro cannot run this model ({message[0][:300]})"
        Path(job["result"]).write_text(json.dumps(result))
        return
    result.update(io=io, inputs=input_names, memory={"arena_bytes": arena, "flash_bytes": len(model),
                                                      "measured_by": f"tflite-micro {tflm_version()}"})
    np.savez(job["outputs"], **outputs)
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])

"""Write model_settings.h for a micro bundle: the arena size, the op resolver, each input's quantization and each
output's decoding, all taken from the bundle's manifest.json (firmware does not parse JSON).

    python examples/micro/gen_settings.py RUN/exports/teacher-micro-int8 > examples/micro/model_settings.h

TF-free: the manifest through edgemtl's light runtime; the model file's input and output order (the indices of
interpreter.input(i) / output(i)) through the tflite-micro package's flatbuffer schema.
"""
import re
import sys

from edgemtl.export.micro import signature_order
from edgemtl.runtime.manifest import BundleManifest

# TFLM's MicroMutableOpResolver method for a builtin op, where it is not the op name in CamelCase
RESOLVER_METHOD = {"BATCH_MATMUL": "BatchMatMul", "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM",
                   "L2_NORMALIZATION": "L2Normalization", "PADV2": "PadV2", "SELECT_V2": "SelectV2",
                   "REVERSE_V2": "ReverseV2", "RELU6": "Relu6", "SPLIT_V": "SplitV"}


def method(op: str) -> str:
    """CONV_2D -> Conv2D, MAX_POOL_2D -> MaxPool2D, STRIDED_SLICE -> StridedSlice."""
    if op in RESOLVER_METHOD:
        return RESOLVER_METHOD[op]
    return "".join(part if re.fullmatch(r"\d+D", part) else part.capitalize() for part in op.split("_"))


def c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def settings(manifest: BundleManifest) -> str:
    if manifest.memory is None or manifest.quantization.io is None:
        raise SystemExit(f"{manifest.bundle_dir}: not a micro bundle (no memory / quantization.io in its manifest)")
    io, ops = manifest.quantization.io, manifest.memory.ops
    lines = ["// Generated from manifest.json by examples/micro/gen_settings.py: do not edit.", "#pragma once", "",
             f"// {manifest.model} {manifest.format}-{manifest.precision}, recipe {manifest.recipe}; measured by "
             f"{manifest.memory.measured_by}", f"constexpr int kArenaBytes = {manifest.memory.arena_bytes};",
             f"constexpr int kModelBytes = {manifest.memory.flash_bytes};", f"constexpr int kOpCount = {len(ops)};",
             "", "// exactly the ops the model uses",
             "#define EDGEMTL_ADD_OPS(resolver) \\",
             " \\\n".join(f"  (resolver).Add{method(op)}();" for op in ops), ""]
    input_order, output_order = signature_order(manifest.model_path.read_bytes())
    for i, entry in enumerate(manifest.input(name) for name in input_order):
        q = io[entry.name]
        lines += [f"// input {i}: {entry.name} ({entry.modality}, {q.dtype}, shape {list(entry.sample_shape)}); "
                  f"q = round(x / scale) + zero_point",
                  f"constexpr float kInput{i}Scale = {q.scale!r}f;",
                  f"constexpr int kInput{i}ZeroPoint = {q.zero_point};"]
    for i, out in enumerate(manifest.output(name) for name in output_order):
        q = io[out.task]
        labels = ", ".join(c_string(label) for label in (out.labels or ()))
        lines += [f"// output {i}: {out.task} ({out.type}, decode {out.decode}); x = (q - zero_point) * scale",
                  f"constexpr float kOutput{i}Scale = {q.scale!r}f;",
                  f"constexpr int kOutput{i}ZeroPoint = {q.zero_point};",
                  f"constexpr int kOutput{i}Width = {out.width()};"]
        if labels:
            lines.append(f"constexpr const char* kOutput{i}Labels[] = {{{labels}}};")
        if out.threshold is not None:
            lines.append(f"constexpr float kOutput{i}Threshold = {out.threshold!r}f;")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings(BundleManifest.read(sys.argv[1])), end="")

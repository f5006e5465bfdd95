"""`edgemtl export`: every requested format x precision of one model, each through the parity gate into a bundle."""
import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..recipe.schema import Recipe
from .. import __version__
from ..errors import EdgemtlError
from ..names import FORMAT_PRECISIONS, FORMATS, INT8_PRECISIONS, PRECISIONS
from ..recipe import recipe_hash
from ..recipe.spec import did_you_mean
from ..rundir import RunDir, atomic_write_json
from . import onnx as onnx_export
from . import parity, tflite
from .bundle import base_manifest, input_entry, output_entry, write_bundle
from .c_array import write_c_array

MIN_CALIBRATION_ROWS = 10
# (format, precision) pairs whose converter can leave named parts in float
KEEPS_FLOAT = {("tflite", "int8"), ("tflite", "int8io"), ("onnx", "fp16"), ("onnx", "dynamic"), ("onnx", "int8")}


def plan(formats, precisions) -> list[tuple[str, str]]:
    problems = [f"--format: unknown format '{f}' (one of {', '.join(FORMATS)}){did_you_mean(f, FORMATS)}"
                for f in formats if f not in FORMATS]
    problems += [f"--precision: unknown precision '{p}' (one of {', '.join(PRECISIONS)})"
                 f"{did_you_mean(p, PRECISIONS)}" for p in precisions if p not in PRECISIONS]
    if problems:
        raise EdgemtlError(*problems)
    return [(f, p) for f in formats for p in precisions if p in FORMAT_PRECISIONS[f]]


def calibration_rows(split, tasks: list, n: int, seed: int) -> np.ndarray:
    """n training rows covering every class of every task as far as the data allows, then random rows."""
    if len(split) < MIN_CALIBRATION_ROWS:
        raise EdgemtlError(f"calibration split too small: the training split has {len(split)} rows, "
                           f"full-int8 calibration needs at least {MIN_CALIBRATION_ROWS}")
    chosen = []
    for t in tasks:
        y = split.y[t.name]
        if t.type in ("multiclass", "binary"):
            chosen += [int(np.flatnonzero(y == c)[0]) for c in np.unique(y[y >= 0])]
        elif t.type == "multilabel":
            chosen += [int(np.flatnonzero(y[:, j] == 1)[0]) for j in range(y.shape[1]) if (y[:, j] == 1).any()]
    rng = np.random.default_rng(seed)
    rest = [i for i in rng.permutation(len(split)) if i not in set(chosen)]
    return np.array(list(dict.fromkeys(chosen + rest))[:max(n, MIN_CALIBRATION_ROWS)])


class Exporter:
    def __init__(self, run: RunDir, recipe: Recipe, model_name: str, data, calibration_samples: int, worked=None):
        from ..models.build import load_model
        from .signature import exported_model, input_specs

        self.run, self.recipe, self.model_name, self.data = run, recipe, model_name, data
        self.model_path = run.require_model(model_name)
        self.model = exported_model(load_model(self.model_path), recipe)
        self.tasks = [t for t in recipe.tasks if t.name in self.model.output_names]
        self.specs = input_specs(self.model)
        self.export_cfg = recipe.export
        test = data["test"]
        self.x, self.y = test.x, test.y
        self.reference = self.model.predict(self.x, batch_size=256, verbose=0)
        rows = calibration_rows(data["train"], self.tasks, calibration_samples, recipe.seed)
        self.samples = [{k: v[i:i + 1] for k, v in data["train"].x.items()} for i in rows]
        self.tmp = Path(tempfile.mkdtemp(prefix="edgemtl-export-"))
        self.cache: dict = {}  # (kind, precision, kept in float) -> converted file
        self.verdicts: dict = {}  # converted file -> parity verdict
        self.worked = {} if worked is None else worked  # kind -> the parts an int8 artifact needed in float

    # --- conversion -----------------------------------------------------------------------------------------
    def convert(self, fmt: str, precision: str, keep_float=()) -> Path:
        key = ("tflite" if fmt == "c" else fmt, precision, tuple(keep_float))  # c wraps the int8 TFLite model
        if key in self.cache:
            return self.cache[key]
        name = f"{fmt}-{precision}-{len(self.cache)}"
        if fmt == "tflite" or fmt == "c":
            path = self.tmp / f"{name}.tflite"
            if precision in ("int8", "int8io"):
                self._convert_in_child(precision, keep_float, path)
            else:
                path.write_bytes(self._guard(lambda: tflite.convert(self.model, precision), fmt))
        else:
            path = self.tmp / f"{name}.onnx"
            self._onnx(precision, keep_float, path)
        self.cache[key] = path
        return path

    def _guard(self, fn, fmt):
        try:
            return fn()
        except Exception as e:  # converters raise many exception types
            raise EdgemtlError(conversion_error(e, fmt, self.model_name, self.model)) from None

    def _cache_path(self, precision, keep_float) -> Path:
        """The same model, recipe, settings and calibration rows give the same file: compress's int8 comparison and
        the export of the same model convert once, through RUN/cache/. The compress section is left out of the key:
        it never changes a conversion, and `compress --set` rewrites it in RUN/recipe.yaml after converting."""
        converting = recipe_hash({k: v for k, v in self.recipe.to_dict().items() if k != "compress"})
        key = [precision, list(keep_float), converting, __version__]
        digest = hashlib.sha256(self.model_path.read_bytes() + json.dumps(key).encode())
        for sample in self.samples:
            for name in sorted(sample):
                digest.update(sample[name].tobytes())
        return self.run.root / "cache" / f"{digest.hexdigest()[:24]}.tflite"

    def _convert_in_child(self, precision, keep_float, out: Path):
        samples = self.tmp / "calibration.npz"
        if not samples.exists():
            np.savez(samples, **{k: np.concatenate([s[k] for s in self.samples]) for k in self.samples[0]})
        cached = self._cache_path(precision, keep_float)
        if cached.exists():
            shutil.copyfile(cached, out)
            return
        job = self.tmp / f"job-{out.stem}.json"
        job.write_text(json.dumps({"model": str(self.model_path), "recipe": str(self.run.recipe),
                                   "precision": precision, "samples": str(samples), "keep_float": list(keep_float),
                                   "out": str(out)}))
        done = subprocess.run([sys.executable, "-m", "edgemtl.export.worker", str(job)], capture_output=True,
                              text=True)
        if done.returncode != 0 or not out.exists():
            how = f"crashed (signal {-done.returncode})" if done.returncode < 0 else "failed"
            last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no message"]
            raise EdgemtlError(f"{self.model_name}: TFLite {precision} conversion {how}: {last[0][:400]}")
        cached.parent.mkdir(exist_ok=True)
        part = cached.with_suffix(".part")  # a killed copy never looks like a cached file
        shutil.copyfile(out, part)
        part.replace(cached)

    def _onnx(self, precision, keep_float, out: Path):
        import onnx

        fp32 = self.tmp / "fp32.onnx"
        if not fp32.exists():
            meta = {"edgemtl.recipe": self.recipe.name, "edgemtl.recipe_hash": self.run.recipe_hash(),
                    "edgemtl.labels": json.dumps({t.name: self.data.labels[t.name].get("classes")
                                                  for t in self.tasks})}
            proto = self._guard(lambda: onnx_export.to_onnx(self.model, self.export_cfg.opset, meta), "onnx")
            onnx.save(proto, str(fp32))
        if precision == "fp32":
            out.write_bytes(fp32.read_bytes())
        elif precision == "fp16":
            proto = self._guard(lambda: onnx_export.to_fp16(onnx.load(str(fp32)), keep_float), "onnx fp16")
            onnx.save(proto, str(out))
        elif precision == "dynamic":
            self._guard(lambda: onnx_export.quantize_dynamic(fp32, out, keep_float), "onnx dynamic int8")
        else:
            samples = onnx_export.onnx_samples(self.samples)
            self._guard(lambda: onnx_export.quantize_static(fp32, out, samples, keep_float), "onnx static int8")

    # --- gate, fallback, bundle -------------------------------------------------------------------------------
    def gate(self, path: Path, precision: str) -> dict:
        if path in self.verdicts:  # the C array wraps the int8 TFLite file already judged
            return copy.deepcopy(self.verdicts[path])
        tolerance = {t.name: self.export_cfg.tolerance.get(t.name, self.export_cfg.default_tolerance)
                     for t in self.tasks}
        self.verdicts[path] = parity.check(path, precision, self.x, self.y, self.reference, self.tasks,
                                           self.data.labels, tolerance)
        return copy.deepcopy(self.verdicts[path])

    def fallback_candidates(self, kind: str, precision: str) -> list[tuple]:
        """Parts to keep in float, tried in order: audio front-ends, each encoder, all encoders; none where the
        format cannot keep parts in float (TFLite fp16 and dynamic-range)."""
        if not self.export_cfg.float_fallback or (kind, precision) not in KEEPS_FLOAT:
            return []
        inputs = self.recipe.inputs
        front = [(f"{i.name}_logmel",) for i in inputs if i.type == "audio"]
        return front + [(f"{i.name}_",) for i in inputs] + ([tuple(f"{i.name}_" for i in inputs)]
                                                                if len(inputs) > 1 else [])

    def export_one(self, fmt: str, precision: str) -> dict:
        kind = "tflite" if fmt == "c" else fmt
        # an int8 sibling that needed parts in float says the fully quantized model fails here too: start there
        keep = self.worked.get(kind, ()) if precision in INT8_PRECISIONS else ()
        path = self.convert(fmt, precision, keep)
        verdict, tried = self.gate(path, precision), [list(keep)] if keep else []
        candidates = self.fallback_candidates(kind, precision)
        if not verdict["deployable"] and precision != "fp32":
            for keep_try in [c for c in candidates if c != keep]:
                tried.append(list(keep_try))
                try:
                    retry_path = self.convert(fmt, precision, keep_try)
                except EdgemtlError:  # this part cannot stay in float for this format: try the next one
                    continue
                retry = self.gate(retry_path, precision)
                if retry["deployable"]:
                    path, verdict, keep = retry_path, retry, keep_try
                    break
            if not candidates and self.export_cfg.float_fallback:
                verdict["reason"] += f" (TFLite {precision} cannot keep parts in float: no fallback to try)"
        if keep and verdict["deployable"] and precision in INT8_PRECISIONS:
            self.worked[kind] = keep
        folder = self.run.root / "exports" / f"{self.model_name}-{fmt}-{precision}"
        verdict["reason"] = verdict["reason"].replace(str(path), folder.name)
        verdict["kept_in_float"] = list(keep)
        verdict["fallback_tried"] = tried
        self._bundle(folder, fmt, precision, kind, path, verdict)
        return {"artifact": folder.name, "size": path.stat().st_size, **verdict}

    def _bundle(self, folder, fmt, precision, kind, path: Path, verdict):
        file = "model.tflite" if kind == "tflite" else "model.onnx"
        files = {file: path.read_bytes()}
        if fmt == "c":
            c_dir = self.tmp / "c"
            c_dir.mkdir(exist_ok=True)
            for f in write_c_array(files[file], c_dir, "model_data"):
                files[f.name] = f.read_bytes()
        manifest = base_manifest(self.recipe, self.run.recipe_hash(), self.model_name, fmt, precision, file)
        inputs = {i.name: i for i in self.recipe.inputs}
        manifest["inputs"] = [input_entry(inputs[name], spec) for name, spec in self.specs.items()]
        manifest["outputs"] = [output_entry(t, self.data.labels[t.name]) for t in self.tasks]
        manifest["quantization"] = self._quantization(kind, precision, path, verdict)
        manifest["parity"] = {"deployable": verdict["deployable"], "reason": verdict["reason"]}
        write_bundle(folder, files, manifest, verdict, self.run.preprocess)

    def _quantization(self, kind, precision, path, verdict) -> dict:
        info = {"precision": precision, "kept_in_float": verdict["kept_in_float"]}
        if precision in ("int8", "int8io"):
            info["calibration_rows"] = len(self.samples)
        if kind == "tflite" and precision == "int8io":
            from ..runtime.backends import LiteRTRunner

            runner = LiteRTRunner(path)
            info["io"] = {n: {"dtype": d["dtype"].__name__, "scale": float(d["quantization"][0]),
                              "zero_point": int(d["quantization"][1])}
                          for n, d in {**runner.inputs, **runner.outputs}.items()}
        return info


def layer_of_op(model, op_type: str):
    """The layer whose name scope holds the first op of this type in the serving graph (ops are named layer/op)."""
    from .signature import serving_function

    layers = {x.name for x in model.layers}
    for op in serving_function(model).graph.get_operations():
        if op.type == op_type:
            return next((part for part in op.name.split("/") if part in layers), None)
    return None


def conversion_error(error: Exception, fmt: str, model_name: str, model) -> str:
    """One line naming the format and, where the converter's message shows it, the layer and op it cannot carry."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(error).__name__]
    op = re.search(r"'tf\.(\w+)' op is neither", text)
    if op:
        layer = layer_of_op(model, op.group(1))
        if layer:
            return f"{model_name}: cannot convert to {fmt}: layer '{layer}' uses op tf.{op.group(1)}, which " \
                   f"{fmt} builtin ops cannot carry"
        return f"{model_name}: cannot convert to {fmt}: op tf.{op.group(1)} is not a {fmt} builtin op"
    first = next((line for line in lines if "error" in line.lower()), lines[0])
    return f"{model_name}: cannot convert to {fmt}: {first[:400]}"


def export_model(run: RunDir, recipe: Recipe, data, model_name: str, formats, precisions, calibration_samples,
                 worked=None) -> list:
    """Export one model; worked (kind -> parts kept in float) is shared by the models of one export."""
    from ..progress import Progress

    combos = plan(formats, precisions)
    if run.model_file(model_name).suffix == ".h5":  # quantization-aware (edgemtl compress): its target is int8
        dropped = [(f, p) for f, p in combos if p not in INT8_PRECISIONS or f == "onnx"]
        combos = [c for c in combos if c not in dropped]
        if dropped:
            print(f"{model_name} is quantization-aware: exported as TFLite / C int8 only (its float graph carries "
                  f"fake-quant ops); skipped {', '.join(f'{f}-{p}' for f, p in dropped)}", file=sys.stderr)
    exporter = Exporter(run, recipe, model_name, data, calibration_samples, worked)
    rows = []
    bar = Progress(len(combos), "export", min_interval=0.0)
    try:
        for fmt, precision in combos:
            try:
                rows.append(exporter.export_one(fmt, precision))
            except EdgemtlError as e:
                rows.append({"artifact": f"{model_name}-{fmt}-{precision}", "size": 0, "deployable": False,
                             "reason": e.messages[0], "tasks": {}, "kept_in_float": []})
            bar.update()
            print(f"  {rows[-1]['artifact']}: {'ok' if rows[-1]['deployable'] else 'NOT deployable'}",
                  file=sys.stderr)
    finally:
        shutil.rmtree(exporter.tmp, ignore_errors=True)
    bar.close()
    atomic_write_json(run.root / "exports" / f"{model_name}-summary.json", rows)
    return rows


def format_table(rows: list, tasks: list) -> str:
    names = [t.name for t in tasks if not t.auxiliary]
    body = []
    for r in rows:
        deltas = [f"{0.0 - r['tasks'][n]['drop'] * 100 + 0.0:+.2f}" if n in r.get("tasks", {}) else ""
                  for n in names]
        verdict = "pass" if r["deployable"] else f"FAIL: {r['reason'][:80]}"
        keep = ", ".join(r.get("kept_in_float") or []) or "-"
        body.append([r["artifact"], f"{r['size'] / 1024:.1f}", verdict, keep, *deltas])
    from ..reports.markdown import table

    return table(["artifact", "size KB", "parity", "kept in float", *(f"{n} Δ" for n in names)], body)

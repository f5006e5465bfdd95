"""`edgemtl predict BUNDLE`: answers for one sample given on the command line, or for every row of a manifest."""
import csv
import json
import os
import sys
from pathlib import Path

from ..errors import EdgemtlError
from ..progress import Progress
from .model import load


def parse_inputs(model, pairs: list) -> dict:
    """['--image', 'x.jpg', '--title', 'Nike ...'] -> {'image': 'x.jpg', 'title': 'Nike ...'}."""
    raw, i = {}, 0
    while i < len(pairs):
        flag = pairs[i]
        if not flag.startswith("--") or i + 1 >= len(pairs):
            raise EdgemtlError(f"predict: expected --<input> VALUE pairs (inputs: "
                               f"{', '.join('--' + n for n in model.inputs)}), got '{flag}'")
        name = flag[2:].replace("-", "_")
        if name in raw:
            raise EdgemtlError(f"predict: {flag} is given twice")
        raw[name] = _value(model, flag[2:], pairs[i + 1])
        i += 2
    return raw


def _value(model, name: str, text: str):
    prep = model.inputs.get(name)
    return text if prep is None else prep.modality.cli_value(name, text)


def format_answers(answers: dict, sep: str = "\n") -> str:
    lines = []
    for task, a in answers.items():
        if "boxes" in a:  # dense answers (boxes, mask): what they found, not the maps
            found = [f"{b['label']} ({b['score']:.3f}) at {b['box']}" for b in a["boxes"]]
            lines.append(f"{task}: {'; '.join(found) or '(no box)'}")
        elif "mask" in a:
            lines.append(f"{task}: areas {json.dumps(a['areas'])}")
        elif "value" in a:
            lines.append(f"{task}: {a['value']:.4g}")
        elif "labels" in a:
            lines.append(f"{task}: {', '.join(map(str, a['labels'])) or '(none)'}")
        else:
            lines.append(f"{task}: {a['label']} ({a['score']:.3f})")
    return sep.join(lines)


def predict_one(bundle: str, pairs: list, as_json: bool, device: str = "cpu",
                allow_undeployable: bool = False) -> str:
    model = load(bundle, device=device, allow_undeployable=allow_undeployable)
    answers = model.predict(**parse_inputs(model, pairs))
    # default=dict: an answer's scores are a read-only mapping (kinds.base.Scores)
    return json.dumps(answers, indent=2, default=dict) if as_json else format_answers(answers)


def predict_manifest(bundle: str, manifest: str, out: str | None, batch: int = 32, device: str = "cpu",
                     allow_undeployable: bool = False) -> Path:
    """Every row of a CSV manifest (columns as in the recipe, media paths relative to it) -> a predictions CSV."""
    model = load(bundle, device=device, allow_undeployable=allow_undeployable)
    path = Path(manifest)
    rows = read_rows(path)
    columns = manifest_columns(model)
    # an optional input's column may be left out of the manifest: absent in every row
    columns = {n: c for n, c in columns.items() if not (n in model.presence and rows and c[0] not in rows[0])}
    wanted = [c for cols in columns.values() for c in cols]
    missing = [c for c in wanted if rows and c not in rows[0]]
    if missing:
        raise EdgemtlError(f"{manifest}: no column '{missing[0]}' (the bundle reads {', '.join(wanted)})")
    out_path = Path(out) if out else path.with_name(f"{path.stem}.predictions.csv")
    check_out_path(path, out_path)
    tasks = list(model.outputs)
    bar = Progress(len(rows), "predict")
    # written beside --out and renamed when every row is done: a failing row never truncates an earlier file
    tmp = out_path.parent / f".tmp-{os.getpid()}-{out_path.name}"
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row"] + [h for t in tasks for h in (f"{t}", f"{t}_score")])
            for start in range(0, len(rows), batch):
                chunk = rows[start:start + batch]
                try:
                    raw = {name: [_cell(model, name, r, cols, path.parent) for r in chunk]
                           for name, cols in columns.items()}
                    answers = model.predict_batch(**raw)
                except EdgemtlError as e:
                    raise failing_row(model, manifest, chunk, start, columns, path.parent, e) from None
                for i, a in enumerate(answers):
                    writer.writerow([start + i + 1] + [v for t in tasks for v in _cells(a[t])])
                bar.update(len(chunk))
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    bar.close()
    return out_path


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV manifest; EdgemtlError naming the file (and row) when it cannot be read as one."""
    if not path.is_file():
        raise EdgemtlError(f"{path}: manifest {'is a folder' if path.is_dir() else 'not found'}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not a column name
            reader = csv.DictReader(f)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise EdgemtlError(f"{path}: not a readable UTF-8 CSV ({e.__class__.__name__})") from None
    if not rows:
        raise EdgemtlError(f"{path}: no rows to predict")
    for i, r in enumerate(rows, 1):
        if None in r or None in r.values():
            raise EdgemtlError(f"{path} row {i}: {'more' if None in r else 'fewer'} fields than the header")
    return rows


def check_out_path(manifest: Path, out: Path) -> None:
    """--out is a new or replaceable file beside an existing folder, never the manifest itself."""
    if out.resolve() == manifest.resolve() or (out.exists() and os.path.samefile(out, manifest)):
        raise EdgemtlError(f"--out {out}: is the manifest itself; writing predictions there would destroy it")
    if out.is_dir():
        raise EdgemtlError(f"--out {out}: is a folder; give a file name, e.g. {out / 'predictions.csv'}")
    if not out.parent.is_dir():
        raise EdgemtlError(f"--out {out}: folder '{out.parent}' not found")


def failing_row(model, manifest: str, chunk: list, start: int, columns: dict, base: Path,
                error: EdgemtlError) -> EdgemtlError:
    """Find the row and column of a batch that failed, by preparing its cells one at a time."""
    for i, r in enumerate(chunk):
        for name, cols in columns.items():
            try:
                cell = _cell(model, name, r, cols, base)
                if cell is not None:
                    model.inputs[name](cell, None)
            except EdgemtlError as e:
                where = f"column '{cols[0]}'" if len(cols) == 1 else f"columns {', '.join(cols)}"
                return EdgemtlError(f"{manifest} row {start + i + 1}, {where}: {e.messages[0]}")
    return EdgemtlError(f"{manifest} rows {start + 1}-{start + len(chunk)}: {error.messages[0]}")


def manifest_columns(model) -> dict[str, tuple[str, ...]]:
    """{input: the manifest columns it reads}: its `column`, or a numeric input's `columns` (one number each)."""
    out = {}
    for entry in model.manifest.inputs:
        if entry.column:
            out[entry.name] = (entry.column,)
        else:
            out[entry.name] = tuple(getattr(entry.preprocess, "columns", None) or (entry.name,))
    return out


def _cell(model, name: str, row: dict, cols: tuple, base: Path):
    """One input's value from a manifest row: None for an optional input whose cells are empty (absent: the runtime
    feeds zeros and presence 0), {column: cell} for a numeric input (one number per column), else its column's cell
    (media paths resolved against the manifest's folder)."""
    if name in model.presence and not any(str(row[c]).strip() for c in cols):
        return None
    entry = model.manifest.input(name)
    if entry.column is None and hasattr(entry.preprocess, "columns"):
        return {c: row[c] for c in cols}
    return model.inputs[name].modality.manifest_cell(name, row[cols[0]], base)


def _cells(a: dict) -> list:
    if "boxes" in a:
        return [json.dumps([[*b["box"], b["label"]] for b in a["boxes"]]), json.dumps([b["score"] for b in a["boxes"]])]
    if "mask" in a:
        return [json.dumps(a["areas"]), ""]
    if "value" in a:
        return [a["value"], ""]
    if "labels" in a:
        return ["|".join(map(str, a["labels"])), ""]
    return [a["label"], round(a["score"], 6)]


def main_predict(args, extra: list) -> None:
    allow = getattr(args, "allow_undeployable", False)
    if args.manifest:
        if extra:
            raise EdgemtlError("predict: give either --manifest or --<input> values, not both")
        written = predict_manifest(args.bundle, args.manifest, args.out, device=args.device,
                                   allow_undeployable=allow)
        print(f"predictions: {written}")
    else:
        print(predict_one(args.bundle, extra, args.json, args.device, allow))
    sys.stdout.flush()

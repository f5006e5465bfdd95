"""Fuzz: bad data rows and manifests. A 24-row copy of the demo (8 train, 8 val, 8 test rows, row 1 a training
row); each case breaks one field of row 1, one media file, or the whole manifest, and `edgemtl check` must stop with
exit 2 and a first error line naming the file and row (or the column / key)."""
import copy
import csv
import io
import json
import shutil
import struct
import wave

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import DEMO
from fuzz.helpers import Case, expect_cli_error, params
from fuzz.test_recipe_fuzz import BASE

COLUMNS = ["audio", "image", "digit", "speaker", "split", "mnist_index"]


@pytest.fixture(scope="session")
def mini(tmp_path_factory):
    """The mini demo folder: pairs.csv and the media files of its rows."""
    root = tmp_path_factory.mktemp("mini")
    with open(DEMO / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = pick_rows(rows)
    for r in picked:
        for column in ("audio", "image"):
            (root / r[column]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(DEMO / r[column], root / r[column])
    write_csv(root / "pairs.csv", picked)
    return root, picked


def pick_rows(rows: list) -> list:
    """8 rows of each split, spread over the file so that every split has several digits and speakers."""
    picked = []
    for split in ("train", "val", "test"):
        of_split = [r for r in rows if r["split"] == split]
        picked += of_split[:: len(of_split) // 8][:8]
    return picked


def write_csv(path, rows, columns=COLUMNS):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def recipe_for(folder, source="pairs.csv", changes=()) -> str:
    raw = copy.deepcopy(BASE)
    raw["data"]["source"] = str(folder / source)
    for path, value in changes:
        node = raw
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    out = folder / "recipe.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(out)


def wav_bytes(rate=8000, n=8000, width=2, channels=1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * (n * channels * width // 2))
    return buf.getvalue()


def png_bytes(w=28, h=28) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


def bomb_png() -> bytes:
    """A small PNG whose header says 60000 x 60000 pixels (a decompression bomb)."""
    raw = png_bytes(1, 1)
    ihdr = raw.find(b"IHDR")
    head = raw[:ihdr + 4] + struct.pack(">II", 60000, 60000) + raw[ihdr + 12:]
    import zlib

    crc = zlib.crc32(head[ihdr:ihdr + 17]) & 0xFFFFFFFF
    return head[:ihdr + 17] + struct.pack(">I", crc) + head[ihdr + 21:]


def wav_rate_zero() -> bytes:
    data = bytearray(wav_bytes())
    data[24:28] = struct.pack("<I", 0)
    return bytes(data)


# (id, column, cell value or None, file content written at that cell's path or None)
MEDIA = {
    "audio": {"ext": "wav", "other": png_bytes, "own": wav_bytes},
    "image": {"ext": "png", "other": wav_bytes, "own": png_bytes},
}


def media_cases() -> list:
    cases = []
    for col, m in MEDIA.items():
        ext = m["ext"]
        cases += [
            Case(f"{col}.missing-file", (col, f"nope/missing.{ext}", None), "pairs.csv row 1"),
            Case(f"{col}.empty-cell", (col, "", None), "pairs.csv row 1"),
            Case(f"{col}.whitespace-cell", (col, "   ", None), "pairs.csv row 1"),
            Case(f"{col}.is-a-folder", (col, "recordings" if col == "audio" else "images", None), "pairs.csv row 1"),
            Case(f"{col}.zero-bytes", (col, f"bad/zero.{ext}", b""), "pairs.csv row 1"),
            Case(f"{col}.random-bytes", (col, f"bad/random.{ext}", bytes(range(256)) * 8), "pairs.csv row 1"),
            Case(f"{col}.other-modality", (col, f"bad/other.{ext}", m["other"]()), "pairs.csv row 1"),
            Case(f"{col}.truncated-half", (col, f"bad/half.{ext}", m["own"]()[: len(m["own"]()) // 2]),
                 "pairs.csv row 1"),
            Case(f"{col}.header-only", (col, f"bad/head.{ext}", m["own"]()[:40]), "pairs.csv row 1"),
            Case(f"{col}.text-file", (col, f"bad/text.{ext}", b"hello world\n"), "pairs.csv row 1"),
            Case(f"{col}.escaping-path", (col, "../../../../../../etc/hostname", None), "pairs.csv row 1"),
            Case(f"{col}.absolute-missing", (col, f"/nonexistent/x.{ext}", None), "pairs.csv row 1"),
            Case(f"{col}.very-long-path", (col, "a" * 5000 + f".{ext}", None), "pairs.csv row 1"),
            Case(f"{col}.number-cell", (col, "12345", None), "pairs.csv row 1"),
            Case(f"{col}.url", (col, f"http://example.com/x.{ext}", None), "pairs.csv row 1"),
        ]
    cases += [
        Case("audio.odd-byte-cut", ("audio", "bad/odd.wav", wav_bytes()[:-1]), "pairs.csv row 1"),
        Case("audio.rate-zero", ("audio", "bad/rate0.wav", wav_rate_zero()), "pairs.csv row 1"),
        Case("audio.rate-300khz", ("audio", "bad/300k.wav", wav_bytes(rate=300000, n=300)), "pairs.csv row 1"),
        Case("audio.rate-1hz", ("audio", "bad/1hz.wav", wav_bytes(rate=1, n=10)), "pairs.csv row 1"),
        Case("image.decompression-bomb", ("image", "bad/bomb.png", bomb_png()), "pairs.csv row 1"),
    ]
    return cases


@pytest.mark.parametrize("case", params(media_cases()))
def test_bad_media_row(case, mini, tmp_path, capsys):
    root, rows = mini
    folder = tmp_path / "d"
    shutil.copytree(root, folder)
    column, cell, content = case.value
    if content is not None:
        (folder / cell).parent.mkdir(parents=True, exist_ok=True)
        (folder / cell).write_bytes(content)
    rows = [dict(r) for r in rows]
    rows[0][column] = cell
    write_csv(folder / "pairs.csv", rows)
    expect_cli_error(["check", recipe_for(folder)], case.where, capsys)


# ---- label cells and columns: (id, row-1 changes, recipe changes, place) ----------------------------------------
REGRESSION = [(("tasks", 1), {"name": "index", "type": "regression", "column": "mnist_index"})]
LABELS = [
    Case("label.regression-inf", ({"mnist_index": "inf"}, REGRESSION), "pairs.csv row 1"),
    Case("label.regression-nan", ({"mnist_index": "nan"}, REGRESSION), "pairs.csv row 1"),
    Case("label.regression-text", ({"mnist_index": "abc"}, REGRESSION), "pairs.csv row 1"),
    Case("label.regression-huge", ({"mnist_index": "1e400"}, REGRESSION), "pairs.csv row 1"),
    Case("label.regression-on-text-column", ({}, [(("tasks", 1), {"name": "who", "type": "regression",
                                                                   "column": "speaker"})]), "pairs.csv row 1"),
    Case("label.column-missing", ({}, [(("tasks", 0, "column"), "digits")]), "tasks[0].column"),
    Case("label.input-column-missing", ({}, [(("inputs", 0, "column"), "audios")]), "inputs[0].column"),
    Case("label.filter-column-missing", ({}, [(("data", "filters"), [{"column": "nope", "in": [1]}])]),
         "data.filters[0].column"),
    Case("label.filters-drop-everything", ({}, [(("data", "filters"), [{"column": "digit", "in": [42]}])]),
         "data.filters"),
    Case("label.split-test-value-unknown", ({}, [(("data", "split", "test"), "none")]), "test split is empty"),
    Case("label.split-train-value-unknown", ({}, [(("data", "split", "train"), "none")]),
         "training split is empty"),
    Case("label.no-test-rows", ({}, [(("data", "filters"), [{"column": "split", "not_in": ["test"]}])]),
         "test split is empty"),
    Case("label.no-train-rows", ({}, [(("data", "filters"), [{"column": "split", "not_in": ["train"]}])]),
         "training split is empty"),
    Case("label.one-class-only", ({}, [(("data", "filters"), [{"column": "digit", "in": [0]}])]), "tasks[0]"),
]


@pytest.mark.parametrize("case", params(LABELS))
def test_bad_label_row(case, mini, tmp_path, capsys):
    root, rows = mini
    folder = tmp_path / "d"
    shutil.copytree(root, folder)
    row_change, recipe_changes = case.value
    rows = [dict(r) for r in rows]
    rows[0].update(row_change)
    write_csv(folder / "pairs.csv", rows)
    expect_cli_error(["check", recipe_for(folder, changes=recipe_changes)], case.where, capsys)


def test_every_row_bad_with_skip(mini, tmp_path, capsys):
    root, rows = mini
    folder = tmp_path / "d"
    shutil.copytree(root, folder)
    write_csv(folder / "pairs.csv", [dict(r, audio="nope.wav") for r in rows])
    expect_cli_error(["check", recipe_for(folder, changes=[(("data", "on_bad_row"), "skip")])], "pairs.csv", capsys)


# ---- whole manifests: (id, file name, bytes, recipe changes, place) ---------------------------------------------
def _csv_text(rows, columns=COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def manifest_cases(rows) -> list:
    text = _csv_text(rows)
    lines = text.splitlines()
    jsonl = "\n".join(json.dumps(r) for r in rows)
    fmt = [(("data", "format"), "jsonl")]
    return [
        Case("csv.binary", ("pairs.csv", bytes(range(256)) * 16, []), "pairs.csv"),
        Case("csv.latin1", ("pairs.csv", text.replace("george", "g\xe9orge").encode("latin-1"), []), "pairs.csv"),
        Case("csv.empty-file", ("pairs.csv", b"", []), "pairs.csv"),
        Case("csv.header-only", ("pairs.csv", (lines[0] + "\n").encode(), []), "pairs.csv"),
        Case("csv.short-row", ("pairs.csv", "\n".join([lines[0], "recordings/x.wav,images/x.png", *lines[2:]])
                               .encode(), []), "pairs.csv row 1"),
        Case("csv.long-row", ("pairs.csv", "\n".join([lines[0], lines[1] + ",extra,more", *lines[2:]]).encode(), []),
             "pairs.csv row 1"),
        Case("csv.duplicate-header", ("pairs.csv", ("audio," + text).encode(), []), "pairs.csv"),
        Case("csv.nul-byte", ("pairs.csv", text.replace("george", "geo\x00rge", 1).encode(), []), "pairs.csv"),
        Case("csv.unclosed-quote", ("pairs.csv", text.replace("george", '"george', 1).encode(), []), "pairs.csv"),
        Case("csv.utf16", ("pairs.csv", text.encode("utf-16"), []), "pairs.csv"),
        Case("csv.folder", ("pairs.csv", None, []), "data.source"),
        Case("csv.unknown-extension", ("pairs.txt", text.encode(), []), "pairs.txt"),
        Case("jsonl.array-line", ("pairs.jsonl", ("[1, 2]\n" + jsonl).encode(), fmt), "pairs.jsonl line 1"),
        Case("jsonl.number-line", ("pairs.jsonl", ("42\n" + jsonl).encode(), fmt), "pairs.jsonl line 1"),
        Case("jsonl.string-line", ("pairs.jsonl", ('"x"\n' + jsonl).encode(), fmt), "pairs.jsonl line 1"),
        Case("jsonl.null-line", ("pairs.jsonl", ("null\n" + jsonl).encode(), fmt), "pairs.jsonl line 1"),
        Case("jsonl.bad-json", ("pairs.jsonl", ("{oops\n" + jsonl).encode(), fmt), "pairs.jsonl line 1"),
        Case("jsonl.path-number", ("pairs.jsonl", (json.dumps(dict(rows[0], audio=5)) + "\n" + "\n".join(
            json.dumps(r) for r in rows[1:])).encode(), fmt), "pairs.jsonl row 1"),
        Case("jsonl.path-list", ("pairs.jsonl", (json.dumps(dict(rows[0], image=["a.png"])) + "\n" + "\n".join(
            json.dumps(r) for r in rows[1:])).encode(), fmt), "pairs.jsonl row 1"),
        Case("jsonl.path-mapping", ("pairs.jsonl", (json.dumps(dict(rows[0], image={"a": 1})) + "\n" + "\n".join(
            json.dumps(r) for r in rows[1:])).encode(), fmt), "pairs.jsonl row 1"),
        Case("jsonl.label-list", ("pairs.jsonl", (json.dumps(dict(rows[0], digit=[1, 2])) + "\n" + "\n".join(
            json.dumps(r) for r in rows[1:])).encode(), fmt), "pairs.jsonl row 1"),
        Case("jsonl.binary", ("pairs.jsonl", bytes(range(256)) * 4, fmt), "pairs.jsonl"),
        Case("jsonl.key-missing-everywhere", ("pairs.jsonl", "\n".join(
            json.dumps({k: v for k, v in r.items() if k != "speaker"}) for r in rows).encode(), fmt), "speaker"),
        Case("npz.not-a-zip", ("pairs.npz", b"not a zip", [(("data", "format"), "npz")]), "pairs.npz"),
        Case("npz.zero-d", ("pairs.npz", "zero-d", [(("data", "format"), "npz")]), "pairs.npz"),
        Case("npz.lengths-differ", ("pairs.npz", "lengths", [(("data", "format"), "npz")]), "pairs.npz"),
        Case("npz.object-array", ("pairs.npz", "object", [(("data", "format"), "npz")]), "pairs.npz"),
        Case("npz.empty", ("pairs.npz", "empty", [(("data", "format"), "npz")]), "pairs.npz"),
    ]


def _npz(kind: str, path):
    if kind == "zero-d":
        np.savez(path, audio=np.array("a.wav"), image=np.array("b.png"), digit=np.array(1), speaker=np.array("x"),
                 split=np.array("train"))
    elif kind == "lengths":
        np.savez(path, audio=np.array(["a.wav"] * 3), image=np.array(["b.png"] * 2), digit=np.arange(3),
                 speaker=np.array(["x"] * 3), split=np.array(["train"] * 3))
    elif kind == "object":
        np.savez(path, audio=np.array([{"a": 1}, None], dtype=object), image=np.array(["b.png"] * 2),
                 digit=np.arange(2), speaker=np.array(["x"] * 2), split=np.array(["train"] * 2))
    else:
        np.savez(path)


MANIFESTS = None


def _manifest_params():
    with open(DEMO / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return params(manifest_cases(pick_rows(rows)))


@pytest.mark.parametrize("case", _manifest_params())
def test_bad_manifest(case, mini, tmp_path, capsys):
    root, _ = mini
    folder = tmp_path / "d"
    shutil.copytree(root, folder)
    name, content, changes = case.value
    (folder / "pairs.csv").unlink()
    if content is None:
        (folder / name).mkdir()
    elif isinstance(content, str):
        _npz(content, folder / name)
    else:
        (folder / name).write_bytes(content)
    expect_cli_error(["check", recipe_for(folder, name, changes)], case.where, capsys)


def test_a_csv_with_a_byte_order_mark_is_read(mini, tmp_path, capsys):
    """Valid input must not be refused: Excel writes UTF-8 CSVs with a BOM ('\\ufeffaudio' as the first header)."""
    from edgemtl.data.manifest import read_table

    root, rows = mini
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _csv_text(rows).encode())
    table = read_table(path)
    assert list(table.columns)[0] == "audio"
    assert table.n_rows == len(rows)


def test_pack_never_follows_media_paths_out_of_the_manifest_folder(mini, tmp_path):
    """A test row's `../` path would be copied from outside the data and written outside OUT: refused, naming the
    row, and nothing is written beside OUT."""
    from edgemtl.bench.pack import _pack_test_rows
    from edgemtl.errors import EdgemtlError
    from edgemtl.recipe import load_recipe

    root, rows = mini
    folder = tmp_path / "data" / "d"
    shutil.copytree(root, folder)
    (tmp_path / "data" / "outside.wav").write_bytes(wav_bytes())
    rows = [dict(r) for r in rows]
    rows[-1]["audio"] = "../outside.wav"  # a test row
    write_csv(folder / "pairs.csv", rows)
    recipe = load_recipe(recipe_for(folder))
    out = tmp_path / "out" / "data"
    with pytest.raises(EdgemtlError, match=r"pairs.csv row 24: audio '../outside.wav' leads outside"):
        _pack_test_rows(recipe, out)
    assert not (tmp_path / "out" / "outside.wav").exists()

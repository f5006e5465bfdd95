"""Labels that training never saw (a group-wise split): warned about, scored as errors, never NaN anywhere."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import AV_RECIPE, DEMO, TINY_AV, set_args
from edgemtl.kinds import task_kind
from edgemtl.kinds.base import MISSING, UNSEEN, mean_score

LABELS = {"type": "multiclass", "classes": ["a", "b"]}


def test_unseen_labels_are_encoded_apart_from_missing_ones_and_counted():
    kind = task_kind("multiclass")
    codes = kind.encode_labels(LABELS, ["a", "", "c", "b", "c"])
    assert list(codes) == [0, MISSING, UNSEEN, 1, UNSEEN]
    assert kind.unseen_labels(LABELS, ["a", "", "c", "d", "c"]) == (3, ["c", "d"])
    multi = task_kind("multilabel")
    assert multi.unseen_labels({"classes": ["x", "y"]}, ["x|z", "y", "", "w"], "|") == (2, ["w", "z"])


@pytest.mark.parametrize("type_", ["multiclass", "binary"])
def test_rows_of_unseen_classes_count_in_n_and_are_wrong(type_):
    kind = task_kind(type_)
    y = kind.encode_labels(LABELS, ["a", "b", "c", "c", ""])
    right = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9], [0.5, 0.5]])
    output = right if type_ == "multiclass" else right[:, 1:]
    m = kind.score(y, output)
    assert m["n"] == 4 and m["unseen"] == 2
    assert m["accuracy"] == pytest.approx(0.5)  # both known rows right, both unseen ones wrong
    assert m["score"] == m["accuracy"] and "reason" not in m


def test_a_split_of_unseen_classes_only_has_no_score_with_the_reason_and_leaves_the_mean():
    kind = task_kind("multiclass")
    none = kind.score(kind.encode_labels(LABELS, ["c", "c", "d"]), np.full((3, 2), 0.5))
    assert none["score"] is None and none["accuracy"] is None and none["n"] == 3 and none["unseen"] == 3
    assert "absent from the training split" in none["reason"]
    digit = kind.score(kind.encode_labels(LABELS, ["a", "b"]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert mean_score({"digit": digit, "speaker": none}) == (1.0, "left out (no score): speaker")
    empty = task_kind("multilabel").score(np.full((2, 2), MISSING, np.float32), np.full((2, 2), 0.5))
    assert empty["score"] is None and empty["reason"] == "no labelled row"


@pytest.mark.parametrize("type_", ["multiclass", "binary"])
def test_the_masked_loss_of_a_batch_without_a_known_label_is_zero(type_):
    from edgemtl.recipe.schema import TaskSpec
    from edgemtl.tfk import tf

    kind = task_kind(type_)
    spec = TaskSpec(name="t", type=type_, column="t")
    y = tf.constant(kind.encode_labels(LABELS, ["c", "", "d"]))
    p = tf.constant(np.full((3, 2 if type_ == "multiclass" else 1), 0.5, np.float32))
    loss = float(kind.loss(spec, LABELS)(y, p))
    assert loss == 0.0


def _speaker_only_in_test(tmp_path: Path, unseen: str = "theo", per_speaker: int = 12) -> Path:
    """The demo manifest, smaller, with absolute media paths; `unseen` speaks in the test rows only, and the test
    rows are all his: every test label of the speaker task is a class training never saw."""
    with open(DEMO / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    groups = {}
    for r in rows:
        if (r["speaker"] == unseen) == (r["split"] == "test"):
            groups.setdefault((r["speaker"], r["split"]), []).append(r)
    kept = []  # every k-th row of each speaker and split: the demo's rows are sorted by digit
    for group in groups.values():
        step = max(1, len(group) // per_speaker)
        kept += [{**r, "audio": str(DEMO / r["audio"]), "image": str(DEMO / r["image"])}
                 for r in group[::step][:per_speaker]]
    out = tmp_path / "pairs_unseen.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return out


def _refuse_constant(name):
    raise ValueError(f"bare {name} in a JSON file")


def strict_json_files(root: Path) -> list[Path]:
    """Every .json / .jsonl file under root, each parsed strictly (a bare NaN/Infinity fails)."""
    files = sorted(p for p in root.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
    for path in files:
        text = path.read_text()
        docs = [line for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" else [text]
        for doc in docs:
            try:
                json.loads(doc, parse_constant=_refuse_constant)
            except ValueError as e:
                raise AssertionError(f"{path}: {e}") from None
    return files


def test_unseen_test_labels_warn_score_as_no_score_and_leave_no_nan_in_the_run(tmp_path, capsys):
    from edgemtl.cli import main

    manifest = _speaker_only_in_test(tmp_path)
    out = tmp_path / "run"
    stages = ["stages=[check,train,evaluate,export,report]", "training.epochs=1", "export.model=teacher",
              "export.formats=[tflite]", "export.precisions=[fp32,int8]", "export.default_tolerance=1.0",
              "export.calibration_samples=16"]
    code = main(["run", str(AV_RECIPE), "--out", str(out), "--data", str(manifest)] + set_args(TINY_AV + stages))
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    warned = [m for m in captured.err.splitlines() if "absent from the training split" in m]
    assert any("(speaker): 12 of 12 test rows" in m and "'theo'" in m and "no test score" in m for m in warned), warned
    assert not any("(digit)" in m for m in warned)

    files = strict_json_files(out)
    names = {p.name for p in files}
    assert {"metrics.json", "history.jsonl", "parity.json", "manifest.json"} <= names, names
    for path in files:
        assert "NaN" not in path.read_text() and "Infinity" not in path.read_text(), path

    metrics = json.loads((out / "models" / "teacher" / "metrics.json").read_text())
    test = metrics["splits"]["test"]
    assert test["speaker"]["score"] is None and test["speaker"]["n"] == 12 and test["speaker"]["unseen"] == 12
    assert "absent from the training split" in test["speaker"]["reason"]
    assert test["mean_score"] == pytest.approx(test["digit"]["score"])
    assert test["mean_note"] == "left out (no score): speaker"
    assert metrics["splits"]["val"]["speaker"]["score"] is not None  # val speakers were all seen
    report = (out / "report.md").read_text()
    assert "nan" not in report.lower()

    assert main(["evaluate", str(out), "-q", "--json"]) == 0  # one JSON object on stdout, the same scores
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["splits"]["test"]["speaker"]["reason"] == test["speaker"]["reason"]
    assert main(["evaluate", str(out), "-q"]) == 0
    table = capsys.readouterr().out
    assert f"speaker: — ({test['speaker']['reason']})" in table and "left out (no score): speaker" in table
    assert "nan" not in table.lower()

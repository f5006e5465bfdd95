"""Distributed training (slow set: `pytest -m slow`). On one CPU box these check correctness, not speed."""
import json
import os
import subprocess
import sys

import pytest

from conftest import AV_RECIPE, REPO, TINY_AV, set_args

pytestmark = pytest.mark.slow


def test_mirrored_strategy_on_two_logical_cpu_devices(tmp_path):
    """A fresh process, so the CPU can still be split into 2 logical devices before TensorFlow starts."""
    out = tmp_path / "mirrored"
    args = [sys.executable, "-m", "edgemtl", "train", str(AV_RECIPE), "--out", str(out)]
    args += set_args(TINY_AV + ["training.distribute=mirrored"])
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "models" / "teacher" / "metrics.json").read_text())
    assert metrics["distribute"] == {"strategy": "MirroredStrategy", "replicas": 2}
    assert metrics["epochs_run"] == 2 and metrics["val"]["mean_score"] > 0


def test_multi_worker_strategy_with_two_local_workers(tmp_path):
    """Two worker processes on 127.0.0.1 (TF_CONFIG); the chief writes the run directory."""
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        args = [sys.executable, "-m", "edgemtl", "train", str(AV_RECIPE), "--out", str(tmp_path / f"w{index}")]
        args += set_args(TINY_AV + ["training.distribute=multi_worker", "training.epochs=1"])
        procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-2000:] + outputs[1][-2000:]
    assert (tmp_path / "w0" / "models" / "teacher" / "model.keras").exists()


def _free_ports(n: int) -> list[int]:
    import socket

    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def test_two_workers_stream_their_shards_and_agree(tmp_path):
    """`train --workers ... --worker-index i` (the convenience that writes TF_CONFIG), media streamed from the files:
    each worker reads its half of the training rows, and synchronous all-reduce leaves both with the same weights
    and the same validation scores."""
    import numpy as np

    workers = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    procs = []
    for index in range(2):
        args = [sys.executable, "-m", "edgemtl", "train", str(AV_RECIPE), "--out", str(tmp_path / f"w{index}"),
                "--workers", workers, "--worker-index", str(index)]
        args += set_args(TINY_AV + ["training.epochs=1", "data.streaming=stream"])
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-2000:] + outputs[1][-2000:]
    assert "streaming" in outputs[0]
    metrics = [json.loads((tmp_path / f"w{i}" / "models" / "teacher" / "metrics.json").read_text()) for i in (0, 1)]
    assert metrics[0]["distribute"] == {"strategy": "CollectiveAllReduceStrategy", "replicas": 2}  # MultiWorkerMirrored
    assert metrics[0]["val"] == metrics[1]["val"]
    from edgemtl.models.build import load_model

    weights = [load_model(tmp_path / f"w{i}" / "models" / "teacher" / "model.keras").get_weights() for i in (0, 1)]
    assert len(weights[0]) == len(weights[1]) > 0
    assert all(np.array_equal(a, b) for a, b in zip(*weights))

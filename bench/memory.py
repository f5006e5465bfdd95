"""Training peak RSS by data size, streaming vs in memory, and training speed of both (issue 22). Not a test.

    python bench/memory.py [--rows 10000 20000 44446 222230] [--steps 30] [--speed-rows 10000] [--speed-steps N]

Each (rows, data.streaming) point is a fresh process running the real data path of recipes/fashion_all.yaml
(prepare: split, vocabularies, decode or file check of every split; then the training pipeline) and a
steps-limited training of the recipe's model (--steps batches of 64; peak RSS plateaus once the pipeline runs).
Rows beyond the 44,446 of products_all.csv repeat the catalogue under distinct file names: symlinks in a temporary
folder (removed afterwards), so nothing is cached by name. The speed comparison runs both pipelines in ONE process,
interleaved A/B/A/B over the same model, so machine load hits both alike. Writes bench/results/memory.md.
"""
import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgemtl.env_info import cpu_info, describe_cpu

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "fashion_all.yaml"
MANIFEST = REPO.parent / "shared" / "data" / "fashion" / "products_all.csv"
OUT = REPO / "bench" / "results" / "memory.md"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def repeated_manifest(folder: Path, rows: int) -> Path:
    """products_all.csv repeated to `rows` rows; every repeat's images are symlinks under new names."""
    with open(MANIFEST, newline="") as f:
        reader = csv.DictReader(f)
        fields, base = reader.fieldnames, list(reader)
    images = folder / "images"
    images.mkdir(parents=True)
    out = folder / "products.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for n in range(rows):
            row, copy = dict(base[n % len(base)]), n // len(base)
            if row["image"]:
                link = images / f"{copy}_{Path(row['image']).name}"
                link.symlink_to(MANIFEST.parent / row["image"])
                row["image"] = str(link.relative_to(folder))
            row["id"] = f"{copy}_{row['id']}"
            writer.writerow(row)
    return out


def _setup(source: str, rows: int, mode: str):
    from edgemtl.data.dataset import prepare
    from edgemtl.recipe import load_recipe

    recipe = load_recipe(RECIPE, [f"data.source={source}", f"data.limit={rows}", f"data.streaming={mode}",
                                  "training.epochs=1"])
    return recipe, prepare(recipe)


def _trainer(recipe, data, steps: int):
    from edgemtl.models.build import build_model, numeric_stats
    from edgemtl.train.trainer import MultitaskTrainer, make_optimizer
    from edgemtl.train.weighting import make_combination

    net = build_model(recipe, data.labels, data.tokenizers, numeric_stats(recipe, data["train"].x))
    trainer = MultitaskTrainer(net, recipe.tasks, data.labels,
                               make_combination(recipe.training.loss_combination, recipe.tasks), unmatched=True)
    trainer.compile(optimizer=make_optimizer(recipe.training, steps))
    return trainer


def _timed_fit(trainer, ds, steps: int) -> float:
    """Seconds per step over the steps after the first 3 (graph tracing, pipeline warm-up)."""
    from edgemtl.tfk import keras

    marks = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(time.perf_counter())

    trainer.fit(ds.take(steps), epochs=1, verbose=0, callbacks=[Clock()])
    return (marks[-1] - marks[2]) / (len(marks) - 3)


def child_memory(source: str, rows: int, mode: str, steps: int) -> dict:
    from edgemtl.data.pipeline import make_dataset

    start = rss_mb()
    t = time.perf_counter()
    recipe, data = _setup(source, rows, mode)
    prepared_s, after_prepare = time.perf_counter() - t, rss_mb()
    trainer = _trainer(recipe, data, steps)
    step_s = _timed_fit(trainer, make_dataset(data["train"], recipe, True, recipe.training.batch_size), steps)
    return {"rows": rows, "mode": mode, "streaming": data.streaming, "rss_start_mb": round(start),
            "rss_after_prepare_mb": round(after_prepare), "peak_rss_mb": round(peak_mb()),
            "prepare_s": round(prepared_s, 1), "step_s": round(step_s, 3), "train_rows": len(data["train"])}


def child_speed(source: str, rows: int, steps: int, rounds: int) -> dict:
    """Both pipelines over the same rows and model, interleaved."""
    from edgemtl.data.pipeline import make_dataset

    recipe, memory = _setup(source, rows, "memory")
    _, streamed = _setup(source, rows, "stream")
    trainer = _trainer(recipe, memory, steps)
    batch = recipe.training.batch_size
    datasets = {"memory": make_dataset(memory["train"], recipe, True, batch),
                "stream": make_dataset(streamed["train"], recipe, True, batch)}
    times = {k: [] for k in datasets}
    for r in range(rounds):  # A B, B A, ...: a drift in machine load falls on both alike
        for name in (list(datasets) if r % 2 == 0 else list(datasets)[::-1]):
            times[name].append(_timed_fit(trainer, datasets[name], steps))
    return {"rows": rows, "steps": steps, "rounds": rounds, "step_s": times}


def run_child(opts, args: list) -> dict:
    """A fresh process for one measurement, with the parent's --steps (--speed-steps) and --speed-rounds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args[0] == "speed":  # one thread for the training step (tf.data's own threads still decode alongside)
        env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")
    steps = opts.speed_steps or opts.steps if args[0] == "speed" else opts.steps
    command = [sys.executable, __file__, f"--steps={steps}", f"--speed-rounds={opts.speed_rounds}", "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[10000, 20000, 44446, 222230])
    p.add_argument("--modes", nargs="+", default=["stream", "memory"])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--speed-rows", type=int, default=10000)
    p.add_argument("--speed-rounds", type=int, default=3)
    p.add_argument("--speed-steps", type=int, help="steps of each speed round (default: --steps)")
    p.add_argument("--memory-rows", type=int, nargs="*", help="the rows of the in-memory points (default: --rows)")
    p.add_argument("--reuse", type=Path, help="JSON lines of points measured before (this script's output): kept")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, source, rows, *rest = args.child
        result = (child_memory(source, int(rows), rest[0], args.steps) if kind == "memory"
                  else child_speed(source, int(rows), args.steps, args.speed_rounds))
        print(json.dumps(result))
        return
    load = os.getloadavg()
    points = [json.loads(x) for x in args.reuse.read_text().splitlines() if x.startswith("{")] if args.reuse else []
    memory_rows = args.rows if args.memory_rows is None else args.memory_rows
    with tempfile.TemporaryDirectory(prefix="edgemtl_memory_") as tmp:
        big = repeated_manifest(Path(tmp), max(args.rows)) if max(args.rows) > 44446 else MANIFEST
        for rows in args.rows:
            for mode in args.modes:
                if (mode == "memory" and rows not in memory_rows) or any(
                        (p["rows"], p["mode"]) == (rows, mode) for p in points):
                    continue
                source = MANIFEST if rows <= 44446 else big
                points.append(run_child(args, ["memory", str(source), str(rows), mode]))
                print(json.dumps(points[-1]), flush=True)
    points.sort(key=lambda p: (p["mode"] != "stream", p["rows"]))
    speed = run_child(args, ["speed", str(MANIFEST), str(args.speed_rows)]) if args.speed_rows else None
    OUT.write_text(report(points, speed, args.steps, (*load, os.getloadavg()[0])))
    print(OUT.read_text())


def report(points: list, speed, steps: int, load) -> str:
    lines = ["# Training memory and speed: streaming vs in memory (recipes/fashion_all.yaml)", "",
             f"Machine: {describe_cpu(cpu_info())}; loaded (load average {load[0]:.1f} when it started, "
             f"{load[-1]:.1f} when it ended; shared by other jobs). "
             f"Written by `python bench/memory.py`.", "",
             f"Each row: a fresh process, `prepare` of every split and {steps} training steps (batch 64) of the "
             f"recipe's model. Peak RSS is the process's maximum resident set (ru_maxrss), so it includes TensorFlow "
             f"and the model; rows beyond 44,446 repeat products_all.csv under distinct file names (symlinks).", "",
             "| rows | data.streaming | peak RSS MB | RSS after prepare MB | training adds MB | prepare s | s/step |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in points:
        lines.append(f"| {r['rows']:,} | {r['mode']} | {r['peak_rss_mb']:,} | {r['rss_after_prepare_mb']:,} | "
                     f"{r['peak_rss_mb'] - r['rss_after_prepare_mb']:,} | {r['prepare_s']} | {r['step_s']} |")
    for mode in ("stream", "memory"):
        mine = [r for r in points if r["mode"] == mode]
        if len(mine) > 1:
            low, high = mine[0], mine[-1]
            growth = (high["peak_rss_mb"] / low["peak_rss_mb"] - 1) * 100
            lines += ["", f"{mode}: peak RSS {low['peak_rss_mb']:,} MB at {low['rows']:,} rows -> "
                          f"{high['peak_rss_mb']:,} MB at {high['rows']:,} rows ({growth:+.1f} %)."]
    if speed:
        med = {k: sorted(v)[len(v) // 2] for k, v in speed["step_s"].items()}
        lines += ["", f"Speed, interleaved in one process ({speed['rows']:,} rows, {speed['rounds']} rounds of "
                      f"{speed['steps']} steps each, the order alternating by round; one TensorFlow thread for the "
                      f"step, tf.data's own threads decode; seconds per step, median of rounds):", "",
                  "| pipeline | s/step (each round) | median |", "|---|---|---:|"]
        for k, v in speed["step_s"].items():
            lines.append(f"| {k} | {', '.join(f'{x:.3f}' for x in v)} | {med[k]:.3f} |")
        lines += ["", f"streaming / in memory: {med['stream'] / med['memory']:.2f}x the time per step."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

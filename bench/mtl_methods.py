"""Every loss combination (and the MMoE trunk) on one recipe, against its single-task models: per-task test metric,
Δm (reports/transfer.py), seconds per epoch. One training each, sequential, the same settings for all.

    nice -n 10 python bench/mtl_methods.py recipes/fashion.yaml --epochs 4 > bench/results/mtl_methods.md
    python scripts/make_canvas.py --rows 1000 --out /tmp/canvas
    python bench/mtl_methods.py recipes/canvas.yaml --data /tmp/canvas/canvas.csv --epochs 10 \
        --wrap "flock -s /work/wt/heavy.lock nice -n 15" > bench/results/mtl_methods_canvas.md

Each run is `edgemtl train` + `edgemtl evaluate` into OUT_DIR/<variant>; the single-task models are trained in
OUT_DIR/sum (`--single-task`: they have no combination to vary). `--export` then also exports the `sum` and `mmoe`
teachers as int8 TFLite and times them (LiteRT, one thread). `--tabulate` trains nothing: the table of the runs
already in OUT_DIR. `--data` replaces the recipe's data.source; `--wrap` prefixes each training's command (a lock,
a priority: what runs between two trainings is free to run). The load average before each training is printed
beside it (and kept in OUT_DIR/mtl_methods.json for `--tabulate`): on a shared machine the times per epoch are only
roughly comparable. Each column names its task's primary metric (accuracy, MAE, mAP@0.5, mIoU).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from edgemtl.artifacts import single_task_name
from edgemtl.bench.machine import cpu_info
from edgemtl.kinds import task_kind
from edgemtl.model_metrics import read_metrics
from edgemtl.recipe import load_recipe
from edgemtl.reports.transfer import transfer
from edgemtl.rundir import RunDir

METHODS = ("sum", "max", "uncertainty", "dwa", "pcgrad", "gradnorm", "cagrad")
VARIANTS = {**{m: [f"training.loss_combination.type={m}"] for m in METHODS}, "mmoe": ["trunk.type=mmoe"]}
# the order of the trainings: the gradient methods and the towers first (what the table is for)
ORDER = ("sum", "pcgrad", "gradnorm", "cagrad", "mmoe", "max", "uncertainty", "dwa")


LABELS = {"map50": "mAP@0.5", "miou": "mIoU", "mae": "MAE"}  # a primary metric as the table's header names it
WRAP: list = []  # --wrap: the prefix of every training's command


def edgemtl(*args: str, wrap: bool = False) -> None:
    command = [*(WRAP if wrap else []), sys.executable, "-m", "edgemtl", *args]
    done = subprocess.run(command, stdout=subprocess.DEVNULL)
    if done.returncode:
        sys.exit(f"edgemtl {' '.join(args)} failed (its message is above)")


def sets(overrides: list) -> list:
    return [a for s in overrides for a in ("--set", s)]


def train(recipe: str, data: list, out: Path, overrides: list, single: bool, loads: dict, name: str) -> None:
    """One `edgemtl run` (check, train, single-task models where asked, evaluate every model)."""
    loads[name] = os.getloadavg()[0]
    print(f"{name} (load {loads[name]:.1f}) ...", file=sys.stderr, flush=True)
    start = time.time()
    stages = "stages=[check,train,single_task,evaluate]" if single else "stages=[check,train,evaluate]"
    edgemtl("run", recipe, *data, "--out", str(out), "--overwrite", *sets(overrides + [stages]), wrap=True)
    print(f"{name}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)


def int8_teacher(out: Path) -> dict:
    """Size and LiteRT latency (one thread, batch 1, median of 200 calls) of the teacher's int8 TFLite."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    edgemtl("export", str(out), "--model", "teacher", "--format", "tflite", "--precision", "int8")
    bundle = out / "exports" / "teacher-tflite-int8"
    gate = "passed" if bundle.exists() else "rejected"
    path = next((bundle if bundle.exists() else out / "exports" / "rejected" / bundle.name).glob("*.tflite"))
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    times = []
    for _ in range(220):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return {"kb": path.stat().st_size / 1024, "ms": 1000 * float(np.median(times[20:])), "gate": gate}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, help="data.limit: the first N rows only")
    ap.add_argument("--data", help="a manifest instead of the recipe's data.source (edgemtl run --data)")
    ap.add_argument("--wrap", default="", help="prefix of each training's command, e.g. 'nice -n 15'")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out-dir", default="runs/mtl_methods")
    ap.add_argument("--tabulate", action="store_true")
    ap.add_argument("--export", action="store_true", help="int8 TFLite size and latency of the sum and mmoe teachers")
    args = ap.parse_args()
    root = Path(args.out_dir)
    common = [f"training.epochs={args.epochs}"] + ([f"data.limit={args.limit}"] if args.limit else [])
    recipe = load_recipe(args.recipe, common, args.data)
    data = ["--data", args.data] if args.data else []
    WRAP[:] = shlex.split(args.wrap)
    saved = root / "mtl_methods.json"
    loads: dict = json.loads(saved.read_text()).get("loads", {}) if args.tabulate and saved.exists() else {}
    if not args.tabulate:  # the sum run also trains the single-task models (they have no combination to vary)
        for name in ["sum", *(v for v in ORDER if v in args.variants and v != "sum")]:
            train(args.recipe, data, root / name, common + VARIANTS[name], name == "sum", loads, name)
    int8 = {n: int8_teacher(root / n) for n in ("sum", "mmoe") if args.export and (root / n).exists()}
    tasks = [t for t in recipe.tasks if not t.auxiliary]
    single_run = RunDir(root / "sum")
    tests = {t.name: read_metrics(single_run, single_task_name(t.name)).get("splits", {}).get("test") for t in tasks}
    if not all(tests.values()):
        sys.exit(f"{root / 'sum'}: no evaluated single-task model of {', '.join(n for n, v in tests.items() if not v)}"
                 f" (the sum run trains them: run without --tabulate)")
    singles = {name: test[name] for name, test in tests.items()}
    rows = {}
    for name in args.variants:
        m = read_metrics(RunDir(root / name), "teacher")
        if "splits" in m:  # a variant not run (yet) is left out
            rows[name] = (m, transfer(tasks, m["splits"]["test"], singles))
    print_table(args, recipe, tasks, singles, rows, loads, int8, single_run)
    saved.write_text(json.dumps(
        {"epochs": args.epochs, "single": singles, "loads": loads, "int8": int8,
         "variants": {n: {"test": m["splits"]["test"], "transfer": t, "train_seconds": m["train_seconds"],
                          "epochs_run": m["epochs_run"]} for n, (m, t) in rows.items()}}, indent=1))


def print_table(args, recipe, tasks, singles, rows, loads, int8, single_run):
    cpu = cpu_info()
    n = singles[tasks[0].name]["n"]
    metric = {t.name: task_kind(t.type).primary_metric for t in tasks}
    limit = (f" --limit {args.limit}" if args.limit else "") + (f" --data {args.data}" if args.data else "")
    rows_note = f", the first {args.limit} rows of the data" if args.limit else ""
    wrap = f" --wrap '{args.wrap}'" if args.wrap else ""
    print(f"`python bench/mtl_methods.py {args.recipe} --epochs {args.epochs}{limit}{wrap}`: {recipe.name}"
          f"{rows_note}, {args.epochs} epochs for every model (the recipe says "
          f"{load_recipe(args.recipe).training.epochs}), "
          f"{n} test rows. Machine: {cpu['model']}, {cpu['cores']} cores, shared with other jobs and loaded "
          f"(the 1-minute load average before each training is in the table): seconds per epoch are only roughly "
          f"comparable.\n")
    head = ["model", *(f"{t.name} {LABELS.get(metric[t.name], metric[t.name])}" for t in tasks), "Δm",
            "hurt (beyond 2 SE)", "s / epoch", "load"]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    seconds = [read_metrics(single_run, single_task_name(t.name))["train_seconds"] for t in tasks]
    print("| single-task | " + " | ".join(f"{singles[t.name][metric[t.name]]:.4f}" for t in tasks)
          + f" | 0 | | {sum(seconds) / args.epochs:.1f} ({len(tasks)} models) | {loads.get('sum', 0):.1f} |")
    for name, (m, result) in rows.items():
        cells = []
        for t in tasks:
            r = result["tasks"][t.name]
            mark = {"helped": " +", "hurt": " −"}.get(r["verdict"], "")
            cells.append(f"{r['multitask']:.4f}{mark}")
        label = "sum, trunk mmoe" if name == "mmoe" else name
        print(f"| {label} | " + " | ".join(cells) + f" | {100 * result['delta_m']:+.2f} % | "
              f"{', '.join(result['hurt']) or '—'} | {m['train_seconds'] / m['epochs_run']:.1f} | "
              f"{loads.get(name, 0):.1f} |")
    print("\n+ / −: multitask better / worse than single-task by more than 2 standard errors of the difference "
          "(binomial SE of each test score over its n test rows: exact for an accuracy, an approximation for "
          "mAP@0.5 and mIoU); unmarked: neutral. Δm: the mean relative change over the tasks, each in its "
          "column's metric.")
    if int8:
        print("\n| teacher int8 TFLite | KB | LiteRT ms (1 thread, batch 1) | parity gate |\n|---|---|---|---|")
        for name, v in int8.items():
            print(f"| {'trunk mmoe' if name == 'mmoe' else 'trunk shared'} | {v['kb']:.0f} | {v['ms']:.2f} | "
                  f"{v['gate']} |")


if __name__ == "__main__":
    main()

"""Test accuracy of a recipe's teacher over several seeds: how much of a result is the recipe and how much the seed.

Each seed is one `edgemtl train` + `edgemtl evaluate` into OUT_DIR/seed<N>; the table (one row per seed, then
min / mean / max, with the machine it ran on) goes to stdout. With `--baseline` (bench/baseline_logreg.py's json),
two more rows: the best baseline per task and in how many seeds the network is above it (ties counted apart).

    python bench/seed_spread.py recipes/av_digits.yaml --seeds 0 1 2 3 4 > bench/results/av_digits_demo_seeds.md
    python bench/seed_spread.py recipes/av_digits.yaml --data ../shared/data/av_digits/pairs.csv \
        --seeds 0 1 2 3 4 > bench/results/av_digits_full_seeds.md
    python bench/seed_spread.py recipes/fashion.yaml --seeds 0 1 2 3 4 5 6 7 8 9 \
        --baseline bench/results/fashion_baseline.json > bench/results/fashion_seeds.md
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from edgemtl import jsonio
from edgemtl.model_metrics import read_metrics
from edgemtl.rundir import RunDir


def train_and_score(recipe: str, data: str | None, seed: int, out: Path) -> dict:
    print(f"seed {seed} ...", file=sys.stderr, flush=True)
    args = ["--data", data] if data else []
    for command in (["train", recipe, "--out", str(out), "--overwrite", "--set", f"seed={seed}", *args],
                    ["evaluate", str(out)]):
        if subprocess.run([sys.executable, "-m", "edgemtl", *command], stdout=subprocess.DEVNULL).returncode:
            sys.exit(f"seed {seed}: edgemtl {command[0]} failed (its message is above)")
    return scores_of(out)


def scores_of(out: Path) -> dict:
    run = RunDir(out)
    if not run.metrics_file("teacher").exists():
        sys.exit(f"{run.metrics_file('teacher')}: missing; run this seed first (without --tabulate)")
    return read_metrics(run, "teacher")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe")
    ap.add_argument("--data", help="manifest instead of the recipe's data.source")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out-dir", default="runs/seed_spread")
    ap.add_argument("--tabulate", action="store_true", help="train nothing: the table of the seeds' runs already "
                    "in OUT_DIR (e.g. to add --baseline rows)")
    ap.add_argument("--baseline", help="json of bench/baseline_logreg.py: add its best per task and a count of "
                    "seeds above it")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        out = Path(args.out_dir) / f"seed{seed}"
        rows.append((seed, scores_of(out) if args.tabulate else train_and_score(args.recipe, args.data, seed, out)))
    test = {seed: m["splits"]["test"] for seed, m in rows}
    tasks = [t for t, v in test[args.seeds[0]].items() if isinstance(v, dict) and "accuracy" in v]
    env = jsonio.read(RunDir(Path(args.out_dir) / f"seed{args.seeds[0]}").env, "environment")
    n = test[args.seeds[0]][tasks[0]]["n"]
    data = f" --data {args.data}" if args.data else ""
    baseline = f" --baseline {args.baseline}" if args.baseline else ""
    print(f"`python bench/seed_spread.py {args.recipe}{data} --seeds {' '.join(map(str, args.seeds))}{baseline}`: "
          f"{n} test rows. Machine: {env['cpu']}, {env['cpu_count']} cores, TensorFlow {env.get('tensorflow')}.\n")
    print("| seed | " + " | ".join(f"{t} accuracy" for t in tasks) + " | best epoch | train s |")
    print("|---" * (len(tasks) + 3) + "|")
    for seed, m in rows:
        print(f"| {seed} | " + " | ".join(f"{test[seed][t]['accuracy']:.4f}" for t in tasks)
              + f" | {m['best_epoch']} of {m['epochs_run']} | {m['train_seconds']:.0f} |")
    for name, pick in (("min", min), ("mean", lambda v: sum(v) / len(v)), ("max", max)):
        print(f"| {name} | " + " | ".join(f"{pick([test[s][t]['accuracy'] for s in args.seeds]):.4f}"
                                        for t in tasks) + " | | |")
    if args.baseline:
        print_baseline_rows(json.loads(Path(args.baseline).read_text())["accuracy"], test, tasks, args.seeds)


def print_baseline_rows(baseline: dict, test: dict, tasks: list, seeds: list):
    """The best baseline per task, then "above / tied" seed counts. Accuracies are compared in whole test rows
    (rounded to 1/n), so float noise does not split a tie."""
    print("| best LR baseline | " + " | ".join(f"{baseline[t]['best']:.4f}" for t in tasks) + " | | |")
    counts = []
    for t in tasks:
        n = test[seeds[0]][t]["n"]
        ours = [round(test[s][t]["accuracy"] * n) for s in seeds]
        theirs = round(baseline[t]["best"] * n)
        above, tied = sum(c > theirs for c in ours), sum(c == theirs for c in ours)
        counts.append(f"{above} of {len(seeds)}" + (f" ({tied} tied)" if tied else ""))
    print("| seeds above the baseline | " + " | ".join(counts) + " | | |")


if __name__ == "__main__":
    main()

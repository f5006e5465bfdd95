"""Test accuracy of a recipe's teacher over several seeds: how much of a result is the recipe and how much the seed.

Each seed is one `edgemtl train` + `edgemtl evaluate` into OUT_DIR/seed<N>; the table (one row per seed, then
min / mean / max, with the machine it ran on) goes to stdout.

    python bench/seed_spread.py recipes/av_digits.yaml --seeds 0 1 2 3 4 > bench/results/av_digits_demo_seeds.md
    python bench/seed_spread.py recipes/av_digits.yaml --data ../shared/data/av_digits/pairs.csv \
        --seeds 0 1 2 3 4 > bench/results/av_digits_full_seeds.md
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path


def train_and_score(recipe: str, data: str | None, seed: int, out: Path) -> dict:
    args = ["--data", data] if data else []
    for command in (["train", recipe, "--out", str(out), "--overwrite", "--set", f"seed={seed}", *args],
                    ["evaluate", str(out)]):
        if subprocess.run([sys.executable, "-m", "edgemtl", *command], stdout=subprocess.DEVNULL).returncode:
            sys.exit(f"seed {seed}: edgemtl {command[0]} failed (its message is above)")
    return json.loads((out / "models/teacher/metrics.json").read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe")
    ap.add_argument("--data", help="manifest instead of the recipe's data.source")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out-dir", default="runs/seed_spread")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        print(f"seed {seed} ...", file=sys.stderr, flush=True)
        rows.append((seed, train_and_score(args.recipe, args.data, seed, Path(args.out_dir) / f"seed{seed}")))
    test = {seed: m["splits"]["test"] for seed, m in rows}
    tasks = [t for t, v in test[args.seeds[0]].items() if isinstance(v, dict) and "accuracy" in v]
    env = json.loads((Path(args.out_dir) / f"seed{args.seeds[0]}" / "env.json").read_text())
    n = test[args.seeds[0]][tasks[0]]["n"]
    data = f" --data {args.data}" if args.data else ""
    print(f"`python bench/seed_spread.py {args.recipe}{data} --seeds {' '.join(map(str, args.seeds))}`: "
          f"{n} test rows. Machine: {env['cpu']}, {env['cpu_count']} cores, TensorFlow {env.get('tensorflow')}.\n")
    print("| seed | " + " | ".join(f"{t} accuracy" for t in tasks) + " | best epoch | train s |")
    print("|---" * (len(tasks) + 3) + "|")
    for seed, m in rows:
        print(f"| {seed} | " + " | ".join(f"{test[seed][t]['accuracy']:.4f}" for t in tasks)
              + f" | {m['best_epoch']} of {m['epochs_run']} | {m['train_seconds']:.0f} |")
    for name, pick in (("min", min), ("mean", lambda v: sum(v) / len(v)), ("max", max)):
        print(f"| {name} | " + " | ".join(f"{pick([test[s][t]['accuracy'] for s in args.seeds]):.4f}"
                                        for t in tasks) + " | | |")


if __name__ == "__main__":
    main()

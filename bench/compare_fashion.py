"""The README's fashion table: multitask model vs single-task models vs logistic-regression baselines, per task.

    python -m edgemtl run recipes/fashion.yaml --out runs/fashion   # teacher, single-task models, export
    python bench/baseline_logreg.py                                  # baselines on the same split
    python bench/compare_fashion.py [--run runs/fashion] > bench/results/fashion.md
"""
import argparse
import json
from pathlib import Path

from edgemtl import jsonio
from edgemtl.artifacts import single_task_name, single_task_of
from edgemtl.model_metrics import read_metrics
from edgemtl.rundir import RunDir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/fashion")
    ap.add_argument("--baseline", default="bench/results/fashion_baseline.json")
    args = ap.parse_args()
    run = RunDir(args.run)
    baseline = json.loads(Path(args.baseline).read_text())["accuracy"]
    teacher = read_metrics(run, "teacher", missing_ok=False)
    env = jsonio.read(run.env, "environment")
    first = next(iter(baseline))
    print(f"Test split: {teacher['splits']['test'][first]['n']} rows. Machine: {env['cpu']}, "
          f"{env['cpu_count']} cores, TensorFlow {env['tensorflow']}.\n")
    print("| task | multitask acc | macro-F1 | single-task acc | best LR baseline (features) | multitask − baseline |")
    print("|---|---|---|---|---|---|")
    for task, scores in baseline.items():
        m = teacher["splits"]["test"][task]
        single = read_metrics(run, single_task_name(task))
        s = single["splits"]["test"][task]["accuracy"] if single else None
        feats = max((k for k in scores if k != "best"), key=lambda k: scores[k])
        print(f"| {task} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {'' if s is None else f'{s:.4f}'} | "
              f"{scores['best']:.4f} ({feats}) | {100 * (m['accuracy'] - scores['best']):+.2f} pt |")
    singles = [m for m in (read_metrics(run, name) for name in run.models() if single_task_of(name)) if m]
    if singles:
        print(f"\nParameters: multitask {teacher['params']:,}; the {len(singles)} single-task models together "
              f"{sum(s['params'] for s in singles):,}. Training time: multitask {teacher['train_seconds']:.0f} s; "
              f"single-task together {sum(s['train_seconds'] for s in singles):.0f} s.")


if __name__ == "__main__":
    main()

"""README table of a run's exports: size, verdict, what stayed in float, test-accuracy change and max |Δ| per task.

    python bench/export_table.py runs/av_digits [--model teacher]
"""
import argparse

from edgemtl import jsonio
from edgemtl.rundir import RunDir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--model", default="teacher")
    args = ap.parse_args()
    rows = jsonio.read(RunDir(args.run).export_summary(args.model), "export summary")
    tasks = list(next(r for r in rows if r.get("tasks"))["tasks"])
    print("| artifact | size KB | deployable | kept in float | " + " | ".join(f"{t} Δ pt" for t in tasks) +
          " | max abs diff vs Keras |")
    print("|" + "---|" * (5 + len(tasks)))
    for r in rows:
        t = r.get("tasks", {})
        deltas = [("n/a" if t[n]["drop"] is None else f"{0.0 - t[n]['drop'] * 100 + 0.0:+.2f}") if n in t else ""
                  for n in tasks]
        diff = max((v["max_abs_diff"] for v in t.values() if v["max_abs_diff"] is not None), default=float("nan"))
        verdict = "yes" if r["deployable"] else "**no**"
        kept = ", ".join(r.get("kept_in_float") or []) or "–"
        print(f"| {r['artifact']} | {r['size'] / 1024:.0f} | {verdict} | {kept} "
              f"| " + " | ".join(deltas) + f" | {diff:.1e} |")


if __name__ == "__main__":
    main()

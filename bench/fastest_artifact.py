"""The teacher's fp32 TFLite against every student bundle of a run, side by side, on this CPU: model call and end to
end from raw inputs, distance from the floor, accuracy and size, and the issue-26 verdict lines.

    python bench/fastest_artifact.py RUN [--repeats 3] [--rounds 15] [--calls 20] [--out bench/results]

Every bundle runs in one child process (edgemtl/bench/interleave.py): one thread, batch 1, interleaved rounds (the
order rotates each round), the median of the rounds, then the median of `--repeats` repeats. The floor's peaks are
XNNPACK fp32 and int8 fully-connected models built on the fly, and the fixed cost is a 1-op model's call, all measured
in the same process. Writes OUT/<recipe>-side-by-side-<cpu>.json and .md, with the CPU model and flags, so the
numbers can be reproduced on another CPU and compared there.
"""
import argparse
import re
import sys
from pathlib import Path

from edgemtl import jsonio
from edgemtl.bench.headline import BASELINE, side_by_side
from edgemtl.bench.machine import machine_info
from edgemtl.bench.run import _flops, accuracy, bundles, students
from edgemtl.env_info import describe_cpu
from edgemtl.kinds import mean_score
from edgemtl.recipe import load_recipe
from edgemtl.reports.bench_report import floor_lines, headline_lines
from edgemtl.rundir import RunDir
from edgemtl.runtime.manifest import BundleManifest
from edgemtl.stages import RunContext


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args()
    run = RunDir(args.run)
    recipe = load_recipe(run.require_recipe())
    data = RunContext(recipe, run, splits=("test",)).data
    pool = students(run)
    names = [a for a in bundles(run) if a.name == BASELINE or a.model in pool]
    print(f"accuracy of {len(names)} bundles on the test split", file=sys.stderr)
    results = {"machine": machine_info(), "accuracy": {}, "sizes": {}}
    for aid in names:
        target = str(run.bundle_dir(aid))
        results["accuracy"][aid.name] = accuracy(recipe, data, target, "bundle")
        results["sizes"][aid.name] = BundleManifest.read(target).model_path.stat().st_size
    results["flops"] = _flops(run, recipe, [(a.name, None, None) for a in names])
    feeds = {k: v[:1] for k, v in data["test"].x.items()}
    print("side by side (interleaved rounds, one process)", file=sys.stderr)
    results["side_by_side"] = side_by_side(run, recipe, feeds, pool, results["flops"], repeats=args.repeats,
                                           rounds=args.rounds, calls=args.calls)
    tasks = [t.name for t in recipe.tasks if not t.auxiliary]
    student = results["side_by_side"]["headline"].get("student")
    lines = [f"# {recipe.name}: teacher fp32 vs the students, side by side", "",
             f"Machine: {_machine(results['machine'])}", "",
             *headline_lines(results, student, tasks), *verdict(results, student, tasks),
             *floor_lines(results), "", table(results, tasks)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{recipe.name}-side-by-side-{_slug(results['machine']['cpu'])}"
    (out / f"{stem}.json").write_text(jsonio.dumps(results, with_reasons=True))
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out / stem}.json and .md", file=sys.stderr)


def verdict(results: dict, student: str | None, tasks: list) -> list[str]:
    """Issue 26's done-when lines, as measured here."""
    side = results["side_by_side"]
    lat = side["latency"]
    if not student or BASELINE not in lat:
        return []
    speed = lat[BASELINE]["median_ms"] / lat[student]["median_ms"]
    size = results["sizes"][BASELINE] / results["sizes"][student]
    t_acc, s_acc = results["accuracy"][BASELINE], results["accuracy"][student]
    drops = {n: 100 * (_score(t_acc.get(n)) - _score(s_acc.get(n))) for n in tasks
             if _score(t_acc.get(n)) is not None and _score(s_acc.get(n)) is not None}
    worst = max(drops, key=drops.get) if drops else None
    ends = [lat.get(f"{n} end-to-end") for n in (BASELINE, student)]
    lines = ["", "Done-when (issue 26), as measured here:",
             f"- model call {speed:.1f}x faster (goal >= 10x): {'met' if speed >= 10 else 'NOT met'}",
             f"- {size:.1f}x smaller (goal >= 20x): {'met' if size >= 20 else 'NOT met'}"]
    if worst and drops[worst] > 0:
        lines.append(f"- largest per-task drop vs the teacher {drops[worst]:.2f} points ({worst}; goal <= 1): "
                     f"{'met' if drops[worst] <= 1.0 else 'NOT met'}")
    elif worst:  # every task scores at least the teacher's: the smallest change is a gain (or none)
        lines.append(f"- no task below the teacher (the smallest change {-drops[worst]:+.2f} points, {worst}; "
                     "goal: no drop over 1): met")
    if all(ends):
        e2e = ends[0]["median_ms"] / ends[1]["median_ms"]
        lines.append(f"- end to end {e2e:.1f}x faster (goal >= 5x): {'met' if e2e >= 5 else 'NOT met'}")
    floor = side.get("floor", {}).get(student)
    if floor:
        lines.append(f"- {student} at {floor['distance']:.1f}x its floor (goal <= 5x): "
                     f"{'met' if floor['distance'] <= 5 else 'NOT met'}")
    return lines


def table(results: dict, tasks: list) -> str:
    side = results["side_by_side"]
    lat = side["latency"]
    head = ["artifact", "size KB", "model ms", "best round ms", "end-to-end ms", "x the floor", "mean score", *tasks]
    rows = []
    for name in sorted(results["sizes"], key=lambda n: lat.get(n, {}).get("median_ms", 1e9)):
        acc = results["accuracy"][name]
        e2e = lat.get(f"{name} end-to-end")
        floor = side.get("floor", {}).get(name)
        rows.append([name, f"{results['sizes'][name] / 1024:.1f}",
                     f"{lat[name]['median_ms']:.4f}" if name in lat else "-",
                     f"{lat[name]['min_ms']:.4f}" if name in lat else "-",
                     f"{e2e['median_ms']:.4f}" if e2e else "-", f"{floor['distance']:.1f}" if floor else "-",
                     _fmt(mean_score({k: v for k, v in acc.items() if isinstance(v, dict)})[0]),
                     *[_fmt(_score(acc.get(t))) for t in tasks]])
    lines = ["model ms: median of the rounds (then of the repeats); best round: the fastest round, what the machine "
             "gives without interference; end to end: predict() from raw inputs, median", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _score(m):
    from edgemtl.reports.scores import score_of

    return score_of(m) if m else None


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _machine(m: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"{describe_cpu(m['cpu'])}. {versions}."


def _slug(cpu: dict) -> str:
    """'amd-epyc-avx512-vnni': the CPU's name and its widest int8 instruction set, since one name ("AMD EPYC")
    covers machines whose int8 kernels differ (AVX2 only, AVX-512 VNNI)."""
    simd = next((f for f in ("amx_int8", "avx512_vnni", "avx_vnni", "avx512f", "avx2", "asimd") if f in cpu["flags"]),
                "")
    return re.sub(r"[^a-z0-9]+", "-", f"{cpu['model']} {simd}".lower()).strip("-")[:48]


if __name__ == "__main__":
    main()

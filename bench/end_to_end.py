"""Where predict() from raw inputs spends its time: each part of one call timed on its own, per bundle, and
optionally the same parts of another checkout's edgemtl (before / after), all interleaved in one process.

    python bench/end_to_end.py RUN BUNDLE [BUNDLE ...] [--compare CHECKOUT] [--repeats 3] [--rounds 15] [--calls 20]

The raw inputs are the run's first test row as predict() takes them (file paths, title strings: the row
bench/fastest_artifact.py times end to end). Parts: each input's preparation (e.g. the image's read + decode), prepare()
(every input plus the name checks), the model call (run() on prepared arrays: set, invoke, get), the invoke alone,
the answers from the outputs, and predict() whole. One thread; interleaved rounds (edgemtl/bench/interleave.py),
the median of the rounds, then of the repeats. --compare: a folder holding another version's `edgemtl` package
(e.g. a worktree at main), imported beside this one under another name. The compared copy's predict() has timed
5-13 % slower than this one's with either code on either side: run the A/B from both checkouts and compare the parts.
"""
import argparse
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgemtl.bench.headline import raw_row
from edgemtl.bench.interleave import interleaved
from edgemtl.recipe import load_recipe
from edgemtl.rundir import RunDir

COMPARED = "edgemtl_compared"  # the other checkout's package, imported under this name


def parts(runtime, bundle: Path, raw: dict) -> dict:
    """name -> callable: the parts of one predict() call of a bundle loaded by `runtime` (an edgemtl.runtime)."""
    model = runtime.load(str(bundle), threads=1)
    arrays = model.prepare(**raw)
    outputs = model.run(arrays)
    if hasattr(model, "answers"):
        answers = model.answers
    else:  # a version without BundleModel.answers: its answers module, task by task
        answer = importlib.import_module(runtime.__name__ + ".answers").answer
        answers = lambda out: {t: answer(model.outputs[t], out[t][0]) for t in model.outputs}  # noqa: E731
    out = {"predict (end to end)": lambda: model.predict(**raw)}
    for name, prepare in model.inputs.items():
        out[f"input {name}: {prepare.kind}"] = lambda prepare=prepare, value=raw[name]: prepare(value)
    out["prepare (all inputs, checks)"] = lambda: model.prepare(**raw)
    out["model call (set, invoke, get)"] = lambda: model.run(arrays)
    if hasattr(model.runner, "interpreter"):
        out["invoke alone"] = model.runner.interpreter.invoke
    out["answers"] = lambda: answers(outputs)
    return out


def import_compared(checkout: Path, tmp: Path):
    """The `edgemtl` package of another checkout as COMPARED (its imports are relative, so it runs renamed)."""
    shutil.copytree(Path(checkout) / "edgemtl", tmp / COMPARED, ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{COMPARED}.runtime")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("bundles", nargs="+", help="bundle names under RUN/exports")
    ap.add_argument("--compare", help="a checkout whose edgemtl is timed beside this one (before / after)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    import edgemtl.runtime as current

    run = RunDir(args.run)
    raw = raw_row(load_recipe(run.require_recipe()), run)
    if raw is None:
        sys.exit(f"{run.root}: no raw test row here (array data, or the data files are missing)")
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this": current}
        if args.compare:
            versions = {"compared": import_compared(Path(args.compare), Path(tmp)), **versions}
        calls = {f"{b}|{v}|{part}": fn for b in args.bundles for v, rt in versions.items()
                 for part, fn in parts(rt, run.root / "exports" / b, raw).items()}
        repeats = [interleaved(calls, args.rounds, args.calls) for _ in range(args.repeats)]
    ms = {k: float(np.median([r[k]["median_ms"] for r in repeats])) for k in calls}
    print(f"raw inputs: {raw}; one thread, median ms of {args.rounds} rounds x {args.calls} calls, "
          f"median of {args.repeats} repeats")
    for bundle in args.bundles:
        names = list(dict.fromkeys(k.split("|")[2] for k in calls if k.startswith(bundle + "|")))
        print(f"\n{bundle}\n\n| part | " + " | ".join(f"{v} ms" for v in versions) + " |")
        print("|---|" + "---|" * len(versions))
        for part in names:
            cells = [f"{ms[k]:.4f}" if (k := f"{bundle}|{v}|{part}") in ms else "-" for v in versions]
            print(f"| {part} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

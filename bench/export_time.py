"""Where `edgemtl export` spends its time: runs the CLI in this process with timers around its parts.

    PYTHONPATH=TREE python bench/export_time.py --out times.json -- export RUN [export flags]

PYTHONPATH picks the edgemtl tree timed (this script only wraps functions both old and new trees have; a part a
tree lacks, e.g. the precision search, is reported as absent). Parts, wall seconds and calls:
  load       the exported Keras model and the gate's reference outputs on the test split (gate.gate_data)
  convert    every conversion (Converter.convert, outermost call only: int8io's nested int8 is inside it)
  child      of which full-int8 conversions in a child process (Converter._convert_in_child), cache hits included
  gate       every parity-gate verdict (parity.check: a child process running the file on the test split)
  search     the precision search as a whole (PrecisionSearch.run: its conversions and gates are in the rows above)
  timing     of which side-by-side latency measurements (search.measure)
  total      from this script's start (after Python's own start-up) to the CLI's return
Run it under `flock -x /work/wt/heavy.lock` when the numbers are to be compared (it times).
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import time

START = time.perf_counter()


class Timers:
    def __init__(self):
        self.parts: dict[str, dict] = {}
        self.depth: dict[str, int] = {}

    def wrap(self, owner, attr: str, part: str, label=None) -> bool:
        """label(args): a sub-key the part's seconds are also summed under (e.g. the artifact's format-precision)."""
        fn = getattr(owner, attr, None)
        if fn is None:
            return False

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            outer = self.depth.get(part, 0) == 0
            self.depth[part] = self.depth.get(part, 0) + 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth[part] -= 1
                if outer:
                    row = self.parts.setdefault(part, {"s": 0.0, "calls": 0})
                    spent = time.perf_counter() - t0
                    row["s"] += spent
                    row["calls"] += 1
                    if label is not None:
                        by = row.setdefault("by", {})
                        by[label(args)] = round(by.get(label(args), 0.0) + spent, 2)

        setattr(owner, attr, timed)
        self.parts.setdefault(part, {"s": 0.0, "calls": 0})
        return True


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def install(timers: Timers) -> dict[str, bool]:
    convert, gate, parity = (_module(f"edgemtl.export.{m}") for m in ("convert", "gate", "parity"))
    search = _module("edgemtl.export.search")
    present = {
        "load": timers.wrap(gate, "gate_data", "load"),
        "convert": timers.wrap(convert.Converter, "convert", "convert",
                               lambda a: f"{a[0].model_name} {a[1].format}-{a[1].precision}"),
        "child": timers.wrap(convert.Converter, "_convert_in_child", "child"),
        "gate": timers.wrap(parity, "check", "gate", lambda a: f"{a[1]} {str(a[0]).rsplit('.', 1)[-1]}"),
    }
    present["search"] = search is not None and timers.wrap(search.PrecisionSearch, "run", "search")
    present["timing"] = search is not None and timers.wrap(search, "measure", "timing")
    return present


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file for the parts' seconds")
    ap.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the edgemtl command line")
    args = ap.parse_args()
    argv = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from edgemtl import cli

    timers = Timers()
    present = install(timers)
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code if isinstance(e.code, int) else 1
    total = time.perf_counter() - START
    result = {"argv": argv, "edgemtl": os.path.dirname(cli.__file__), "exit": code, "total_s": round(total, 2),
              "parts": {k: {**v, "s": round(v["s"], 2)} if present[k] else None
                        for k, v in timers.parts.items()} | {k: None for k, ok in present.items() if not ok}}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()

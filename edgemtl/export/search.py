"""The latency-aware precision search: per model and format, the artifact that is fastest on this machine among
those that pass every task's tolerance (export.target: latency), or the smallest (size), the other objective
breaking ties.

Candidates, bounded (never 2^blocks): every requested precision's artifact as the parity gate passed it, then for
full int8 a greedy walk over the model's blocks (stem = the first image conv, each encoder, the trunk, the heads):
int8 with the parts kept so far plus one more block in float is timed side by side with the best int8 so far, and
only when it is faster (the block costs more in int8 than in float) is it judged by the gate and kept. A block that is
no faster in float stays int8 and is never judged. Every time is measured on the kernels the file ships with (the
gate's pinned LiteRT kernel set; ONNX Runtime's level), one thread, batch 1, interleaved rounds, medians
(bench/interleave.py).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import kinds
from ..artifacts import ArtifactId
from ..bench.interleave import measure, tied
from ..errors import EdgemtlError
from .formats import FORMATS

TARGETS = ("latency", "size")
STEM_FOLLOWERS = ("BatchNormalization", "ReLU", "Activation", "MaxPooling2D")  # fused into the conv, or its pool
# (the int8 model then quantizes the pooled map, a quarter of the conv's output)


@dataclass(frozen=True)
class Block:
    name: str  # stem:image, encoder:title, trunk, heads
    parts: tuple[str, ...]  # layer-name prefixes kept in float (as export.tflite.convert takes them)


def blocks(model, recipe, tasks) -> list[Block]:
    """The model's blocks, input side first: each image input's stem (its layers up to the first convolution and the
    batch norm / activation fused into it), each input's front-end (audio log-mel), each encoder, the fusion and
    trunk, the heads."""
    layers = list(model.layers)
    out = []
    for inp in recipe.inputs:
        if inp.type == "image":
            stem = _stem(layers, inp.name)
            if stem:
                out.append(Block(f"stem:{inp.name}", stem))
        front = kinds.modality(inp.type).float_parts(inp)
        if front:
            out.append(Block(f"front:{inp.name}", tuple(front)))
    out += [Block(f"encoder:{i.name}", (f"{i.name}_",)) for i in recipe.inputs]
    out.append(Block("trunk", ("fusion_", "trunk_")))
    if tasks:
        out.append(Block("heads", tuple(t.name for t in tasks)))
    return out


def _stem(layers, prefix: str) -> tuple[str, ...]:
    """Layer names from the input's first layer to its first convolution, with the batch norm and activation the
    converter fuses into it and the pooling right after."""
    mine = [x for x in layers if x.name.startswith(f"{prefix}_")]
    first = next((i for i, x in enumerate(mine) if type(x).__name__ in ("Conv2D", "DepthwiseConv2D")), None)
    if first is None:
        return ()
    end = first + 1
    while end < len(mine) and type(mine[end]).__name__ in STEM_FOLLOWERS:
        end += 1
    return tuple(x.name for x in mine[:end])


@dataclass
class Candidate:
    aid: ArtifactId
    keep: tuple[str, ...]  # parts kept in float
    path: Path
    deployable: bool
    blocks: tuple[str, ...] = ()  # the search's blocks kept in float (beyond the gate's fallback)
    latency: dict | None = None  # interleaved timing (median_ms, q1_ms, q3_ms)

    @property
    def label(self) -> str:
        extra = f" [{', '.join(self.blocks)} in float]" if self.blocks else ""
        return f"{self.aid.name}{extra}"

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@dataclass
class Recommendation:
    """One format's outcome: the candidates timed side by side, the chosen one, and the ones it ties with."""
    format: str
    target: str
    measured_on: str
    chosen: Candidate | None
    candidates: list[Candidate] = field(default_factory=list)
    tie_with: tuple[str, ...] = ()

    def entry(self, aid: ArtifactId, keep: tuple[str, ...]) -> dict:
        """The manifest's `selection` section of one artifact of this format (keep: what its bundle keeps in
        float)."""
        mine = next((c for c in self.candidates if c.aid == aid and tuple(c.keep) == tuple(keep) and c.latency), None)
        chosen = self.chosen is not None and self.chosen.aid == aid and mine is self.chosen
        return {"recommended": chosen, "target": self.target,
                "measured_on": self.measured_on, "threads": 1,
                "latency_ms": mine.latency["median_ms"] if mine else None,
                "compared_ms": {c.label: round(c.latency["median_ms"], 5) for c in self.candidates if c.latency},
                "tie_with": list(self.tie_with) if chosen else []}


def searchable(fmt_name: str) -> bool:
    """Formats the search times on this machine: those run by a desktop runtime (not C arrays or TFLite Micro)."""
    fmt = FORMATS[fmt_name]
    return fmt.benched and not fmt.gate_runtime and not fmt.wraps


def choose(candidates: list[Candidate], target: str) -> tuple[Candidate | None, tuple[str, ...]]:
    """The best deployable candidate for the target and the labels it ties with. latency: the fastest; candidates
    tied with it (medians within 5 %, tied()) are ranked by size, so a tie resolves the same way every run. size:
    the smallest, ties (same bytes) by latency."""
    ok = [c for c in candidates if c.deployable and c.latency]
    if not ok:
        return None, ()
    if target == "size":
        best = min(ok, key=lambda c: (c.size, c.latency["median_ms"]))
        return best, tuple(c.label for c in ok if c is not best and c.size == best.size)
    fastest = min(ok, key=lambda c: c.latency["median_ms"])
    close = [c for c in ok if tied(c.latency, fastest.latency)]
    best = min(close, key=lambda c: (c.size, c.latency["median_ms"]))
    return best, tuple(c.label for c in close if c is not best)


class PrecisionSearch:
    """Drives the search for one model over an export session (run.ModelExport): convert, judge, time."""

    def __init__(self, session, target: str, say: Callable[[str], None] | None = None):
        if target not in TARGETS:
            raise EdgemtlError(f"export.target: unknown target '{target}' (one of {', '.join(TARGETS)})")
        self.session, self.target = session, target
        self.say = say or logging.getLogger("edgemtl").info  # hidden by -q, like export's other lines
        test = session.gate.x
        self.feeds = {k: v[:1] for k, v in test.items()}

    def _candidate(self, aid: ArtifactId) -> Candidate | None:
        try:
            found = self.session.verdict(aid)
        except EdgemtlError:  # conversion failed: the export row says why; nothing to time
            return None
        return Candidate(aid, found.keep, found.path, found.report.deployable)

    def _time(self, candidates: list[Candidate]) -> None:
        targets = [self._target(c, i) for i, c in enumerate(candidates)]
        timed = measure(targets, self.feeds, workdir=self.session.converter.workdir, inline=True)["latency"]
        for i, c in enumerate(candidates):
            c.latency = timed[f"c{i}"]

    def _target(self, c: Candidate, i: int) -> dict:
        report = self.session.reports.get(c.path)
        runtime = report.runtime if report is not None else None
        return {"name": f"c{i}", "path": str(c.path), "kernels": getattr(runtime, "kernels", None),
                "graph_optimization": getattr(runtime, "graph_optimization", None)}

    def run(self, fmt_name: str, precisions, walk: bool = True) -> Recommendation:
        from ..env_info import cpu_info, describe_cpu

        model = self.session.model_name
        base = [c for p in precisions if FORMATS[fmt_name].supports(p)
                for c in [self._candidate(ArtifactId(model, fmt_name, p))] if c is not None]
        int8 = next((c for c in base if c.aid.precision == "int8" and c.deployable), None)
        explored = self._walk(int8) if walk and int8 is not None and FORMATS[fmt_name].can_keep_float("int8") \
            else []
        timed = [c for c in base if c.deployable] + explored
        if timed:
            self.say(f"  {model} {fmt_name}: timing {len(timed)} deployable candidates side by side")
            self._time(timed)
        # the int8 bundle is the best int8 variant for the target; then the best bundle of the format
        variants = [c for c in timed if c.aid.precision == "int8"]
        best_int8, _ = choose(variants, self.target)
        if best_int8 is not None and best_int8.blocks:
            self.session.searched[(fmt_name, "int8")] = best_int8.keep
        bundles = [c for c in timed if c.aid.precision != "int8"] + ([best_int8] if best_int8 else [])
        chosen, ties = choose(bundles, self.target)
        if chosen is not None:
            tie = f" (tied with {', '.join(ties)}: the smaller is chosen)" if ties else ""
            self.say(f"  {model} {fmt_name}: recommended {chosen.label}, {chosen.latency['median_ms']:.4f} ms, "
                     f"{chosen.size / 1024:.1f} KB{tie}")
        return Recommendation(fmt_name, self.target, describe_cpu(cpu_info()), chosen, timed, ties)

    def _walk(self, start: Candidate) -> list[Candidate]:
        """Greedy over the blocks: keep one more block in float when that is faster (timed against the best int8 so
        far) and still passes the gate. Returns the deployable variants it kept, in order."""
        session, aid = self.session, start.aid
        blocks_ = [b for b in blocks(session.converter.model, session.recipe, session.gate.tasks)
                   if not all(part.startswith(start.keep) for part in b.parts)]  # not already float
        best, kept = start, []
        self._time([best])
        for i, block in enumerate(blocks_, 1):
            keep = tuple(dict.fromkeys(best.keep + block.parts))
            self.say(f"  {aid.name}: search {i}/{len(blocks_)}: {block.name} in float")
            try:
                path = session.converter.convert(aid, keep)
            except EdgemtlError as e:
                self.say(f"    cannot keep {block.name} in float: {e.messages[0][:120]}")
                continue
            trial = Candidate(aid, keep, path, False, best.blocks + (block.name,))
            self._time([best, trial])
            faster = trial.latency["median_ms"] < best.latency["median_ms"] and not tied(trial.latency, best.latency)
            verdict = ""
            if faster:
                trial.deployable = session.judge(path, aid.precision).deployable
                verdict = "passes the gate: kept" if trial.deployable else "over tolerance: not kept"
            self.say(f"    {trial.latency['median_ms']:.4f} vs {best.latency['median_ms']:.4f} ms"
                     f"{': ' + verdict if verdict else ': no faster, stays int8'}")
            if faster and trial.deployable:
                best = trial
                kept.append(trial)
        return kept

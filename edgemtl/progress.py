"""A dependency-free progress bar for long loops (decoding, exporting, benchmarking); silent under -q."""
import logging
import sys
import time

log = logging.getLogger("edgemtl")


class Progress:
    """Redrawn in place on a terminal; elsewhere (logs) one INFO line at the end for work worth reporting. Nothing
    at all when the "edgemtl" logger does not show INFO (`-q`)."""

    def __init__(self, total: int, desc: str, stream=None, min_interval: float = 0.2):
        self.total, self.desc, self.min_interval = max(total, 1), desc, min_interval
        self.stream = stream or sys.stderr
        self.done, self.start, self.last = 0, time.monotonic(), 0.0
        self.shown = log.isEnabledFor(logging.INFO)
        self.live = self.shown and self.stream.isatty()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.live and (now - self.last >= self.min_interval or self.done >= self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r{self.desc} [{bar:<30}] {self.done}/{self.total} {now - self.start:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        now = time.monotonic()
        if self.live:
            self._draw(now)
            self.stream.write("\n")
            self.stream.flush()
        elif self.shown and now - self.start >= 1.0:
            log.info("%s: %d/%d in %.1fs", self.desc, self.done, self.total, now - self.start)

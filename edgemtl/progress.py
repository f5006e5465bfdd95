"""Progress of long loops (decoding, exporting, benchmarking): a tqdm bar with rate and ETA on a terminal; silent
under -q. tqdm is a light-install dependency (ai-edge-litert pulls it in too)."""
import logging
import sys
import time

log = logging.getLogger("edgemtl")


class Progress:
    """A tqdm bar (elapsed, rate, ETA) redrawn in place on a terminal; elsewhere (logs, CI) no bar, one INFO line at
    the end for work that took a second or more. Nothing at all when the "edgemtl" logger does not show INFO (-q)."""

    def __init__(self, total: int, desc: str, stream=None, min_interval: float = 0.2):
        self.total, self.desc = max(total, 1), desc
        self.stream = stream or sys.stderr
        self.done, self.start = 0, time.monotonic()
        self.shown = log.isEnabledFor(logging.INFO)
        live = self.shown and self.stream.isatty()
        if live:
            from tqdm import tqdm  # here: 0.15 s of imports that a command failing on its arguments never pays
        self.bar = tqdm(total=self.total, desc=desc, file=self.stream, mininterval=min_interval, leave=True,
                        dynamic_ncols=True, unit="it") if live else None

    @property
    def live(self) -> bool:
        return self.bar is not None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.shown and time.monotonic() - self.start >= 1.0:
            log.info("%s: %d/%d in %.1fs", self.desc, self.done, self.total, time.monotonic() - self.start)

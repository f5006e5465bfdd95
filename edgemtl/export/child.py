"""The parent's side of the conversion child (export/worker.py): one long-lived child per model's conversions,
started on the first job and again after a crash, so a crash costs only the job that caused it."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .worker import ERROR, OK


@dataclass(frozen=True)
class Outcome:
    ok: bool
    how: str = ""  # "crashed (signal N)" or "failed"
    message: str = ""  # the child's last word on what went wrong


class ConversionChild:
    """Sends job files to one child and reads its answers, one job in flight at a time: `submit` sends one ahead
    (the export's first full-int8 file, converted while the parent does its float conversions), `result` waits for
    it, `run` does both. log: where the child's stderr goes (read back for the last line when the child dies)."""

    def __init__(self, log: Path):
        self.log = Path(log)
        self.proc: subprocess.Popen | None = None
        self.started = 0  # children started (a test counts them)
        self.pending: tuple[Path, int] | None = None  # the job in flight and where its stderr starts in the log
        self.outcomes: dict[Path, Outcome] = {}  # answered jobs not yet collected

    def command(self) -> list[str]:
        return [sys.executable, "-m", "edgemtl.export.worker"]

    def start(self) -> None:
        """Start the child unless one is running: it imports TensorFlow, then waits for its first job."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()

    def submit(self, job: Path) -> None:
        if self.pending is not None:  # one in flight at a time: a crash is then always the job it was on
            self._answer()
        self.start()
        self.pending = (Path(job), self.log.stat().st_size if self.log.exists() else 0)
        try:
            self.proc.stdin.write(f"{job}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # died since start: _answer reports it
            pass

    def result(self, job: Path) -> Outcome:
        job = Path(job)
        if job not in self.outcomes and self.pending is not None and self.pending[0] == job:
            self._answer()
        return self.outcomes.pop(job, None) or Outcome(False, "failed", "the job was never sent")

    def run(self, job: Path) -> Outcome:
        self.submit(job)
        return self.result(job)

    def _answer(self) -> None:
        job, offset = self.pending
        try:
            answer = self.proc.stdout.readline()
        except (OSError, ValueError):
            answer = ""
        self.pending = None
        if answer.startswith(OK):
            self.outcomes[job] = Outcome(True)
        elif answer.startswith(ERROR):
            self.outcomes[job] = Outcome(False, "failed", answer[len(ERROR):].strip() or "no message")
        else:  # no answer: the child died on this job
            code = self.proc.wait()
            self.proc = None
            how = f"crashed (signal {-code})" if code < 0 else "failed"
            self.outcomes[job] = Outcome(False, how, self._last_line(offset))

    def _start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         text=True, bufsize=1)
        self.started += 1

    def _last_line(self, offset: int) -> str:
        with open(self.log, errors="replace") as f:
            f.seek(offset)
            lines = [line for line in f.read().splitlines() if line.strip()]
        return lines[-1] if lines else "no message"

    def close(self) -> None:
        """End the child: an idle one exits when its stdin closes; one still on a job (sent ahead and never
        collected, or the parent was interrupted while waiting) is killed, as is one that does not exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.pending is not None:
            proc.kill()
            self.pending = None
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

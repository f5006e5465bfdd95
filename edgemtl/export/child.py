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
    """Sends job files to one child and reads its answers. log: where the child's stderr goes (read back for the
    last line when the child dies)."""

    def __init__(self, log: Path):
        self.log = Path(log)
        self.proc: subprocess.Popen | None = None
        self.started = 0  # children started (a test counts them)
        self.busy = False  # a job sent and not answered (an interrupt while waiting leaves it set)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "edgemtl.export.worker"]

    def start(self) -> None:
        """Start the child unless one is running: it imports TensorFlow, then waits for its first job."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()

    def run(self, job: Path) -> Outcome:
        self.start()
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.busy = True
        try:
            self.proc.stdin.write(f"{job}\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        except BrokenPipeError:
            answer = ""
        self.busy = False
        if answer.startswith(OK):
            return Outcome(True)
        if answer.startswith(ERROR):
            return Outcome(False, "failed", answer[len(ERROR):].strip() or "no message")
        code = self.proc.wait()  # no answer: the child died on this job
        self.proc = None
        how = f"crashed (signal {-code})" if code < 0 else "failed"
        return Outcome(False, how, self._last_line(offset))

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
        """End the child: an idle one exits when its stdin closes; one still on a job (the parent was interrupted
        while waiting) is killed, as is one that does not exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.busy:
            proc.kill()
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

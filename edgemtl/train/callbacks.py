"""Callbacks of a training run: validation scores per task, loss-combination updates, NaN guard, best model."""
import json
import logging
import math

import numpy as np

from .. import jsonio, kinds
from ..data.pipeline import predict_split
from ..kinds import higher_is_better
from ..models.files import save_model_file
from ..rundir import HISTORY_FILE, MODEL_FILE, atomic_save, atomic_write_text, kill_point
from ..tfk import keras

log = logging.getLogger("edgemtl")


class ValidationScores(keras.callbacks.Callback):
    """Adds val_<task>_<metric> (raw metrics) and val_mean_score to the epoch logs (runs first, so later callbacks
    see them). val_mean_score is the mean over tasks of each task kind's NORMALISED score (accuracy for class tasks,
    1 - MAE/std for regression), never a raw metric; when no task has a scorable validation row it is left out of
    the logs (a note is logged once) rather than written as NaN."""

    def __init__(self, net, split, tasks, labels, batch_size):
        super().__init__()
        self.net, self.split, self.tasks, self.labels, self.batch_size = net, split, tasks, labels, batch_size
        self.noted = set()

    def on_epoch_end(self, epoch, logs=None):
        outputs = predict_split(self.net, self.split, max(self.batch_size, 256))
        scores = kinds.score_tasks(self.tasks, self.labels, self.split.y, outputs)
        mean, note = kinds.mean_score(scores)
        if mean is not None:
            logs["val_mean_score"] = mean
        if note and note not in self.noted:
            self.noted.add(note)
            log.warning(f"val_mean_score: {note}" if mean is not None else f"val_mean_score: none ({note})")
        for task, metrics in scores.items():
            for name, value in metrics.items():
                if name in kinds.TASKS[_type(self.tasks, task)].metric_names and value is not None:
                    logs[f"val_{task}_{name}"] = value  # a metric without a scorable row stays out: never NaN
            if metrics.get("reason") and task not in self.noted:
                self.noted.add(task)
                log.warning(f"val_{task}: no score ({metrics['reason']})")


def _type(tasks, name: str) -> str:
    return next(t.type for t in tasks if t.name == name)


class CombinationUpdate(keras.callbacks.Callback):
    """Feeds each epoch's mean training loss per task to the loss combination (DWA) and logs the task weights."""

    def __init__(self, combination):
        super().__init__()
        self.combination = combination

    def on_epoch_end(self, epoch, logs=None):
        self.combination.end_epoch({n: float(logs[f"{n}_loss"]) for n in self.combination.task_names})
        for n, w in self.combination.task_weights().items():
            logs[f"weight_{n}"] = w


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite task loss and remembers which task it was."""

    def __init__(self, task_names):
        super().__init__()
        self.task_names = task_names
        self.problem = None

    def on_train_batch_end(self, batch, logs=None):
        for n in self.task_names:
            value = float(logs.get(f"{n}_loss", 0.0))
            if not math.isfinite(value):
                self.problem = (n, batch, value)
                self.model.stop_training = True
                return


class EpochSafeBackup(keras.callbacks.BackupAndRestore):
    """Step checkpoints for --resume that never count an epoch as done before its history row is written.

    Keras resumes a checkpoint taken at an epoch's last batch at the next epoch, so a kill during that epoch's
    validation lost the epoch's row. Here the last batch is not backed up; the epoch's backup is taken at its end,
    which must come after BestModel's (this callback goes after it in the list).
    """

    def on_train_batch_end(self, batch, logs=None):
        if batch != self._last_step():
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._backup(epoch=epoch, batch=self._last_step())  # Keras reads "last batch of epoch" as: go on at epoch + 1

    def _last_step(self):
        return (self.params.get("steps") or 0) - 1

    def on_train_end(self, logs=None):
        # Keep the checkpoint: training is done only once saved_model/ and metrics.json are written (fit._finish
        # removes the backup last), so a kill in between resumes and finishes instead of starting at epoch 1.
        self.delete_checkpoint = False
        super().on_train_end(logs)


class BestModel(keras.callbacks.Callback):
    """Saves the net whenever the monitor improves (atomically), stops early, and appends history.jsonl.

    On --resume it re-reads history.jsonl, so the best value and patience continue where they were. A kill after
    an epoch's row was written but before EpochSafeBackup's epoch-end backup makes Keras redo the end of that epoch:
    its old row (and any later one) is then replaced, so every epoch appears once.
    """

    def __init__(self, net, monitor, patience, model_dir, epochs, tasks, to_save=None, eligible=None,
                 file_name=MODEL_FILE):
        super().__init__()
        self.net, self.monitor, self.patience, self.model_dir, self.epochs = net, monitor, patience, model_dir, epochs
        self.to_save = to_save or (lambda net: net)
        self.eligible = eligible or (lambda row: True)
        self.file_name = file_name
        self.shown = [f"val_{t.name}_{t.metrics[0]}" for t in tasks]  # one metric per task in the log line
        self.sign = 1.0 if higher_is_better(monitor) else -1.0
        self.history_path = model_dir / HISTORY_FILE
        self.history = self.read_history(model_dir)
        if self.history_path.exists() and not self.history_path.read_bytes().endswith(b"\n"):
            # a kill during the append left half a row (the reader dropped it): rewrite, so the next row starts clean
            log.warning("%s: dropped a half-written last line (an interrupted write)", self.history_path)
            atomic_write_text(self.history_path, "".join(history_line(row) for row in self.history))
        self._rejudge()

    def _rejudge(self):
        self.best, self.best_epoch, self.wait = (-np.inf, -np.inf), None, 0
        for row in self.history:
            self._judge(row["epoch"], row)

    def on_epoch_begin(self, epoch, logs=None):
        if any(row["epoch"] > epoch for row in self.history):  # this epoch is being redone after a resume
            self.history = [row for row in self.history if row["epoch"] <= epoch]
            atomic_write_text(self.history_path, "".join(history_line(row) for row in self.history))
            self._rejudge()

    @staticmethod
    def read_history(model_dir) -> list:
        from ..model_metrics import read_history_file

        return read_history_file(model_dir / HISTORY_FILE)

    def _judge(self, epoch, row: dict) -> bool:
        """Better monitor value wins; a tie (a saturated accuracy on a small val split) goes to the lower val_loss."""
        if not self.eligible(row):  # e.g. sparsity not yet at its target: neither best nor counted for patience
            return False
        value = row.get(self.monitor)
        key = (self.sign * value, -row.get("val_loss", 0.0)) if value is not None and math.isfinite(value) else None
        if key is not None and key > self.best:
            improved = key[0] > self.best[0]
            self.best, self.best_epoch = key, epoch
            self.wait = 0 if improved else self.wait + 1  # patience counts epochs without a better value
            return True
        self.wait += 1
        return False

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if v is not None}}
        if not math.isfinite(row.get("loss", 0.0)):  # weights of a diverged epoch are never "best"
            return
        improved = self._judge(epoch + 1, row)
        if improved:
            atomic_save(self.model_dir / self.file_name, lambda p: save_model_file(self.to_save(self.net), p))
        self.history.append(row)
        with open(self.history_path, "a") as f:
            f.write(history_line(row))
        kill_point(f"epoch-end:{self.model_dir.name}")
        # through the logger: -q (WARNING) hides the per-epoch lines with every other progress message
        log.info("%s", epoch_line(row, self.shown, self.monitor, self.epochs, improved))
        if self.patience is not None and self.wait > self.patience and epoch + 1 < self.epochs:
            log.info("early stop: %s did not improve for %d epochs", self.monitor, self.patience)
            self.model.stop_training = True


def history_line(row: dict) -> str:
    """One history.jsonl line, strict JSON: a non-finite value (a diverged loss) is null, named in null_reasons."""
    clean, reasons = jsonio.strict(row)
    if reasons:
        clean[jsonio.NULL_REASONS] = reasons
    return json.dumps(clean, allow_nan=False) + "\n"


def _cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "—"


def epoch_line(row: dict, shown: list, monitor: str, epochs: int, improved: bool) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {_cell(row.get('loss'))}"]
    parts += [f"{key[4:]} {_cell(row[key])}" for key in shown if key in row]
    parts.append(f"{monitor} {_cell(row.get(monitor))}{' *best' if improved else ''}")
    return "  ".join(parts)

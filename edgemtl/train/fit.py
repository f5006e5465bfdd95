"""One training run of one model into RUN/models/NAME: model.keras (best), saved_model/, history, metrics.json."""
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..data.pipeline import DECODE_ERROR, make_dataset, steps_per_epoch
from ..errors import EdgemtlError
from ..kinds import higher_is_better
from ..model_metrics import read_history, read_metrics, update_metrics
from ..models.build import build_model, count_params, load_model, numeric_stats
from ..recipe.schema import Recipe
from ..rundir import MODEL_FILE, RunDir, atomic_save, remove_tree
from ..tfk import keras, tf
from .callbacks import BestModel, CombinationUpdate, EpochSafeBackup, NanGuard, ValidationScores
from .trainer import MultitaskTrainer, make_optimizer, make_strategy
from .weighting import make_combination

log = logging.getLogger("edgemtl")


@dataclass(frozen=True)
class TrainHooks:
    """How compression changes the training loop (the default: the recipe's model, trained on its labels).

    make_net(): the net to train instead of the recipe's (a student, a pruned or quantization-aware copy; it can
    start from given weights); make_trainer(net, combination): the trainer instead of MultitaskTrainer (a
    distillation trainer with its teacher and its own train step); callbacks: added to fit's; to_save(net): what
    gets saved (e.g. pruning stripped); eligible(history_row): whether an epoch may be the best (e.g. at the target
    sparsity); file_name: the best model's file in the model directory; init_net(net): called on the net built
    from the recipe before training (incremental training copies and freezes an earlier run's layers).
    """

    make_net: Callable | None = None
    make_trainer: Callable | None = None
    callbacks: tuple = ()
    to_save: Callable | None = None
    eligible: Callable | None = None
    file_name: str = MODEL_FILE
    init_net: Callable | None = None


def train_model(recipe: Recipe, data, run: RunDir, name: str = "teacher", tasks=None, resume: bool = False,
                overwrite: bool = False, hooks: TrainHooks | None = None) -> dict:
    """Train (or resume) one model on prepared data; return its summary. Tasks default to all recipe tasks;
    hooks: what compression changes in the loop (TrainHooks)."""
    hooks = hooks or TrainHooks()
    tasks = tasks if tasks is not None else recipe.tasks
    file_name, eligible = hooks.file_name, hooks.eligible
    model_dir = run.model_dir(name)
    _claim(model_dir, resume, overwrite)
    if resume and run.saved_model(name).exists() and not run.backup(name).exists():
        log.info("%s: already trained; nothing to resume", model_dir)
        return read_metrics(run, name)
    salvage = resume and _checkpoint_lost(run, name, model_dir / file_name)
    if not run.backup(name).exists() and not salvage:
        run.history(name).unlink(missing_ok=True)  # no checkpoint to continue from: start clean
    training = recipe.training
    keras.utils.set_random_seed(recipe.seed)
    strategy = make_strategy(training.distribute)
    batch = training.batch_size
    net, combination, trainer = _build(recipe, data, tasks, name, strategy, hooks)
    monitor = _monitor(training.early_stopping.monitor, tasks)
    nan_guard = NanGuard([t.name for t in tasks])
    callbacks = [
        ValidationScores(net, data["val"], tasks, data.labels, batch),
        CombinationUpdate(combination),
        nan_guard,
        *hooks.callbacks,
        BestModel(net, monitor, training.early_stopping.patience, model_dir, training.epochs, tasks,
                  hooks.to_save, eligible, file_name),
        EpochSafeBackup(str(run.backup(name)), save_freq=training.checkpoint_every),
        keras.callbacks.TensorBoard(str(run.tensorboard(name)), write_graph=False),
    ]
    if salvage:  # never train from epoch 1 over the best model of finished epochs
        log.warning("%s: no usable step checkpoint to continue from; finishing with the best model of the %d "
                    "finished epoch(s) (--overwrite trains again from the start)", model_dir,
                    len(read_history(run, name)))
        return _finish(run, model_dir / file_name, name, tasks, combination, 0.0, monitor, strategy, eligible)
    if resume and _fit_finished(callbacks, training.epochs, model_dir / file_name):
        log.info("%s: training had finished; completing its saved_model and metrics", model_dir)
        return _finish(run, model_dir / file_name, name, tasks, combination, 0.0, monitor, strategy, eligible)
    start = time.time()
    cache = run.preprocess / "cache" / name  # data.cache: disk (streaming)
    train_ds = make_dataset(data["train"], recipe, True, batch, cache)
    val_ds = make_dataset(data["val"], recipe, False, batch, cache)
    try:
        trainer.fit(train_ds, validation_data=val_ds, epochs=training.epochs, callbacks=callbacks,
                    verbose=1 if sys.stdout.isatty() and log.isEnabledFor(logging.INFO) else 0)
    except tf.errors.OpError as e:  # a streamed file that exists but cannot be decoded (checked only when reached)
        if DECODE_ERROR not in str(e):
            raise
        reason = str(e).split(DECODE_ERROR, 1)[1].split("\n")[0].strip()
        raise EdgemtlError(f"training stopped: {reason} (data.streaming checks only that each file exists before "
                           f"training; fix or remove the file)") from None
    elapsed = time.time() - start
    if nan_guard.problem:
        task, batch_no, value = nan_guard.problem
        kept = (f"the best model so far is kept in {model_dir}" if (model_dir / file_name).exists()
                else "no epoch had finished cleanly, so no model was saved")
        raise EdgemtlError(f"training stopped: task '{task}' loss became {value} at batch {batch_no}; {kept}; "
                           f"lower training.learning_rate or check the '{task}' labels")
    if not (model_dir / file_name).exists():
        raise EdgemtlError(f"training produced no usable model (monitor '{monitor}' was never finite)")
    return _finish(run, model_dir / file_name, name, tasks, combination, elapsed, monitor, strategy, eligible)


def _build(recipe: Recipe, data, tasks: list, name: str, strategy, hooks: TrainHooks):
    """The functional net, its loss combination and the trainer around them, built inside the strategy.

    hooks.make_net() and hooks.make_trainer(net, combination) replace the recipe's model and the plain
    MultitaskTrainer; the heads' own-logit training (task unmatched_weight) is for a net built from the recipe only.
    """
    training = recipe.training
    make_net, make_trainer = hooks.make_net, hooks.make_trainer
    with strategy.scope():
        net = make_net() if make_net else build_model(recipe, data.labels, data.tokenizers,
                                                      numeric_stats(recipe, data["train"].x), tasks, name)
        if hooks.init_net:
            hooks.init_net(net)
        combination = make_combination(training.loss_combination, tasks)
        trainer = (make_trainer(net, combination) if make_trainer
                   else MultitaskTrainer(net, tasks, data.labels, combination, unmatched=make_net is None))
        steps = steps_per_epoch(len(data["train"]), training.batch_size)
        trainer.compile(optimizer=make_optimizer(training, steps))
        trainer({k: v[:1] for k, v in data["train"].x.items()})  # built before fit, as BackupAndRestore needs
    return net, combination, trainer


def _finish(run: RunDir, model_file, name, tasks, combination, elapsed, monitor, strategy, eligible=None) -> dict:
    best = load_model(model_file)
    atomic_save(run.saved_model(name), lambda p: best.save(p, save_format="tf"))
    history = read_history(run, name)
    candidates = [r for r in history if eligible is None or eligible(r)]
    previous = read_metrics(run, name)
    sign = 1 if higher_is_better(monitor) else -1
    best_row = max(candidates, key=lambda r: (sign * r.get(monitor, float("-inf")), -r.get("val_loss", 0.0)))
    summary = {
        "model": name,
        "tasks": [t.name for t in tasks],
        "params": count_params(best),
        "train_seconds": round(previous.get("train_seconds", 0.0) + elapsed, 2),
        "epochs_run": len(history),
        "best_epoch": best_row["epoch"],
        "monitor": monitor,
        "loss_weights": combination.task_weights(),
        "distribute": {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync},
        "val": {k[4:]: v for k, v in best_row.items() if k.startswith("val_")},
    }
    update_metrics(run, name, summary)
    if run.backup(name).exists():
        remove_tree(run.backup(name))  # finished: nothing left to resume (renamed first: never half there)
    return summary


def _fit_finished(callbacks: list, epochs: int, model_file) -> bool:
    """The history says training had ended (every epoch, or early stopping) and the best model is saved: a kill
    came while it was being finished, so --resume finishes it rather than training on or starting again."""
    best = next(c for c in callbacks if isinstance(c, BestModel))
    rows = best.history
    if not rows or not model_file.exists():
        return False
    return rows[-1]["epoch"] >= epochs or (best.patience is not None and best.wait > best.patience)


def _checkpoint_lost(run: RunDir, name: str, model_file) -> bool:
    """--resume of a model with finished epochs (a best model, history rows) whose step checkpoint is gone, empty or
    damaged (it cannot be restored): that checkpoint is removed with a warning and the caller finishes with the best
    model. False where training can continue from the checkpoint, or nothing was finished yet."""
    if not (model_file.exists() and read_history(run, name)):
        return False
    backup = run.backup(name)
    if backup.exists():
        problem = _checkpoint_problem(backup)
        if problem is None:
            return False
        log.warning("%s: the step checkpoint cannot be restored (%s); removed", backup, problem)
        remove_tree(backup)
    return True


def _checkpoint_problem(backup) -> str | None:
    """Why backup/ holds no restorable checkpoint (None: it does); every tensor is read, as restoring would."""
    from ..tfk import tf

    try:
        latest = tf.train.latest_checkpoint(str(backup / "chief"))
        if latest is None:
            return "it holds no checkpoint"
        reader = tf.train.load_checkpoint(latest)
        for variable in reader.get_variable_to_shape_map():
            reader.get_tensor(variable)
    except Exception as e:  # noqa: BLE001 - whatever the reader raises, the checkpoint is unusable
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return None


def check_free(model_dir, resume: bool, overwrite: bool) -> None:
    """Refuse a model directory that holds a model, unless resuming or overwriting: callable before decoding data."""
    if model_dir.exists() and any(model_dir.iterdir()) and not (resume or overwrite):
        raise EdgemtlError(f"{model_dir} already exists: pass --resume to continue it or --overwrite to start again")


def _claim(model_dir, resume: bool, overwrite: bool):
    check_free(model_dir, resume, overwrite)
    if model_dir.exists() and any(model_dir.iterdir()):
        if overwrite:
            shutil.rmtree(model_dir)
    elif resume:
        log.info("nothing to resume in %s; starting", model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)


def _monitor(monitor: str, tasks: list) -> str:
    """A per-task monitor of a task this model does not have (single-task models) falls back to val_mean_score."""
    names = [t.name for t in tasks]
    if monitor in ("val_loss", "val_mean_score") or any(monitor.startswith(f"val_{n}_") for n in names):
        return monitor
    return "val_mean_score"

"""`edgemtl compress RUN`: student from scratch, distilled student, pruned, quantization-aware — each a model in
the run directory — and a table that compares them with the teacher, per task."""
import dataclasses
import logging

from ..errors import EdgemtlError
from ..kinds import higher_is_better
from ..model_metrics import read_history, read_metrics, update_metrics
from ..models.build import build_model, count_params, load_model, numeric_stats
from ..models.files import write_qat_spec
from ..recipe.derive import fine_tune_recipe
from ..recipe.schema import Recipe
from ..rundir import QAT_WEIGHTS_FILE, RunDir, atomic_write_json, atomic_write_text
from ..train.evaluate import evaluate_model
from ..train.fit import TrainHooks, train_model
from . import prune
from .distill import DistillTrainer, teacher_targets
from .selection import select_from_teacher
from .student import check_smaller, student_recipe

log = logging.getLogger("edgemtl")


class Compressor:
    def __init__(self, run: RunDir, recipe: Recipe, data, resume=False, overwrite=False):
        self.run, self.recipe, self.data, self.resume, self.overwrite = run, recipe, data, resume, overwrite
        self.cfg = recipe.compress
        self.teacher_path = run.require_model(self.cfg.teacher)
        self.student = student_recipe(recipe)
        self.tasks = self.student.tasks
        self.steps = -(-len(data["train"]) // self.student.training.batch_size)
        self.start = "student"  # what pruning and QAT start from (choose_start)
        self.pruned_names: list[str] = []  # the layers pruning chose (their sparsity is followed through QAT)
        self._with_teacher = None  # the data with the teacher's outputs cached where inputs are fixed (with_teacher)

    def _recipe_for(self, epochs: int, learning_rate: float) -> Recipe:
        """The student's recipe for a fine-tuning phase (pruning, QAT): its own epochs and rate, no early stop."""
        return fine_tune_recipe(self.student, epochs, learning_rate)

    def _distiller(self, net, combination):
        teacher = load_model(self.teacher_path)
        return DistillTrainer(net, self.tasks, self.data.labels, combination, teacher, self.cfg.distill,
                              {i.name: i.type for i in self.student.inputs}, self.steps)

    def with_teacher(self):
        """The data whose fixed splits carry the teacher's outputs (distill.teacher_targets): the validation split
        always, the training split when no input is augmented. Computed once for distillation, pruning and QAT."""
        if self._with_teacher is None:
            from .. import kinds
            from ..data.pipeline import make_dataset

            fixed = ["val"] + ([] if any(kinds.modality(i.type).augmenter(i) for i in self.student.inputs)
                               else ["train"])
            teacher, batch = load_model(self.teacher_path), self.student.training.batch_size
            splits = dict(self.data.splits)
            for name in fixed:
                split = splits[name]
                cached = teacher_targets(teacher, make_dataset(split, self.student, False, batch), self.tasks,
                                         bool(self.cfg.distill.hint))
                splits[name] = dataclasses.replace(split, y={**split.y, **cached})
            log.info("compress: the teacher's outputs are cached for the %s split(s)", " and ".join(fixed))
            self._with_teacher = dataclasses.replace(self.data, splits=splits)
        return self._with_teacher

    def _fine_tuner(self):
        """Pruning and QAT fine-tune with the teacher when they start from the distilled student, else on labels."""
        return self._distiller if self.start == "student" else None

    def _train(self, recipe, name, hooks: TrainHooks | None = None) -> dict:
        log.info("compress: %s", name)
        hooks = hooks or TrainHooks()
        data = self.with_teacher() if hooks.make_trainer is not None else self.data
        return train_model(recipe, data, self.run, name, self.tasks, self.resume, self.overwrite, hooks)

    def _build_student(self):
        return build_model(self.student, self.data.labels, self.data.tokenizers,
                           numeric_stats(self.student, self.data["train"].x), self.tasks, "student")

    def choose_student(self) -> dict | None:
        """compress.student.target_ms / target_speedup: the student is the largest candidate measured within the
        budget (student_search.py), before any training; returns the search's record. Without either, nothing
        changes."""
        from .student_search import searched_student

        result = searched_student(self.run, self.recipe, self.data, self.student,
                                  lambda: count_params(load_model(self.teacher_path)))
        if result is None:
            return None
        self.student = result.recipe
        return result.record

    def check(self):
        """Problems found on an untrained student (size, layers to prune) stop the stage before any training."""
        student = self._build_student()
        check_smaller(count_params(student), count_params(load_model(self.teacher_path)))
        if self.cfg.prune.enabled and not prune.select_layers(student, self.recipe, self.cfg.prune):
            raise EdgemtlError("compress.prune: no layer left to prune (every candidate is in compress.prune.skip)")

    def scratch(self):
        return self._train(self.student, "student-scratch")

    def distilled(self):
        make_net = self._selected_student if self.cfg.student.init == "teacher" else None
        return self._train(self.student, "student", TrainHooks(make_net=make_net, make_trainer=self._distiller))

    def _selected_student(self):
        """The student with the teacher's weights cut to its widths (weight selection), random where they do not
        fit."""
        net = self._build_student()
        done, left = select_from_teacher(net, load_model(self.teacher_path))
        log.info("compress: student starts from the teacher's weights in %d layers%s", len(done),
                 f"; random in {len(left)}: {', '.join(left)}" if left else "")
        return net

    def choose_start(self) -> str:
        """Sets and explains what pruning and QAT start from: compress.start, or under auto the better validation
        score of the distilled student and the one from scratch (a tie goes to distillation)."""
        choice = self.cfg.start
        if choice != "auto":
            self.start = choice
            return f"compress.start: {choice}"
        if not self.cfg.scratch:
            return "no student-scratch to compare with: compress.scratch is false"
        monitor = self.student.training.early_stopping.monitor
        scores = {name: best_validation(self.run, name, monitor) for name in ("student", "student-scratch")}
        best = max(scores, key=lambda n: scores[n] if higher_is_better(monitor) else -scores[n])
        why = f"{monitor}: student {scores['student']:.4f}, student-scratch {scores['student-scratch']:.4f}"
        log.info("compress: %s is pruned and trained quantization-aware (%s)", best, why)
        self.start = best
        return why

    def pruned(self, base: str):
        cfg = self.cfg.prune
        source = load_model(self.run.require_model(base))
        names = prune.select_layers(source, self.recipe, cfg)
        expected = prune.expected_sparsity(source, names, cfg)
        hooks = TrainHooks(
            make_net=lambda: prune.wrap_for_pruning(load_model(self.run.model_file(base)), names, cfg, self.steps),
            make_trainer=self._fine_tuner(), callbacks=(prune.update_step_callback(), prune.SparsityLog()),
            to_save=prune.strip, eligible=prune.eligible_after(expected))
        summary = self._train(self._recipe_for(cfg.epochs, cfg.learning_rate), "student-pruned", hooks)
        model = load_model(self.run.model_file("student-pruned"))
        self.pruned_names = names
        sparsity = {"sparsity": prune.layer_sparsity(model, names), "sparsity_target": round(expected, 4)}
        self._add_to_metrics("student-pruned", sparsity)
        return {**summary, **sparsity}

    def quantization_aware(self, base: str, pruned: bool):
        from .qat import KeepZeros, quantize_for_training

        cfg = self.cfg.qat
        heads = prune.head_layers(load_model(self.run.require_model(base)))

        def make_net():
            try:
                net = quantize_for_training(load_model(self.run.model_file(base)), heads, pruned)
            except (RuntimeError, ValueError) as e:  # tfmot names the layer it cannot quantize
                raise EdgemtlError(f"compress.qat: {base} cannot be trained quantization-aware: "
                                   f"{str(e).splitlines()[0][:300]}") from None
            write_qat_spec(self.run.model_dir("student-qat"), base, heads, pruned)  # how load_model rebuilds it
            return net

        hooks = TrainHooks(make_net=make_net, make_trainer=self._fine_tuner(), file_name=QAT_WEIGHTS_FILE,
                           callbacks=(KeepZeros(),) if pruned else ())
        summary = self._train(self._recipe_for(cfg.epochs, cfg.learning_rate), "student-qat", hooks)
        if pruned and self.pruned_names:  # what pruning-preserving QAT kept of the pruned zeros
            from .qat import qat_layer

            model = load_model(self.run.model_file("student-qat"))
            kept = prune.layer_sparsity(model, self.pruned_names, qat_layer)
            self._add_to_metrics("student-qat", {"sparsity": kept})
            summary = {**summary, "sparsity": kept}
        return summary

    def _add_to_metrics(self, name: str, extra: dict):
        update_metrics(self.run, name, extra)


def best_validation(run: RunDir, name: str, monitor: str) -> float:
    """The monitored validation value at a model's best epoch."""
    best = read_metrics(run, name, missing_ok=False)["best_epoch"]
    return next(row[monitor] for row in read_history(run, name) if row["epoch"] == best)


def compress(run: RunDir, recipe: Recipe, data, resume=False, overwrite=False) -> str:
    """Train every compressed model the recipe asks for, evaluate them, write RUN/compress.md; return the table."""
    c = Compressor(run, recipe, data, resume, overwrite)
    searched = c.choose_student()
    c.check()
    models = [c.cfg.teacher]
    if c.cfg.scratch:
        c.scratch()
        models.append("student-scratch")
    c.distilled()
    models.append("student")
    why = c.choose_start()
    base = c.start
    if c.cfg.prune.enabled:
        c.pruned(base)
        models.append(base := "student-pruned")
    if c.cfg.qat.enabled:
        c.quantization_aware(base, pruned=base == "student-pruned")
        models.append("student-qat")
    for name in models:
        evaluate_model(run, recipe, data, name)
    from ..reports.compress_report import compression_table

    rows, text = compression_table(run, recipe, data, models, base if c.cfg.qat.enabled else None)
    rows["start"] = {"model": c.start, "why": why}
    text += f"\nPruning and quantization-aware training start from {c.start} ({why}).\n"
    if searched:
        from .student_search import search_table

        rows["student_search"] = searched
        text += "\n".join(search_table(searched)) + "\n"
    handed = rows.get("deployed_int8")
    if handed and handed.get("instead_of"):
        log.warning("compress: %s is handed on instead of %s: %s", handed["model"], handed["instead_of"],
                    handed["why"])
    atomic_write_json(run.compress_json, rows)
    atomic_write_text(run.compress_md, text)
    return text


def deployed_models(run: RunDir, models) -> list[str]:
    """export.model with student-qat replaced by the int8 student compress handed on instead (RUN/compress.json
    "deployed_int8": post-training int8 of QAT's base where QAT int8 failed the gate or lost to it)."""
    import json

    try:
        handed = json.loads(run.compress_json.read_text()).get("deployed_int8") or {}
    except (OSError, ValueError):
        return list(models)
    instead = handed.get("instead_of")
    out = []
    for name in models:
        chosen = handed["model"] if instead and name == instead else name
        if chosen != name:
            log.warning("export: %s instead of %s (compress hands it on: %s)", chosen, name, handed.get("why"))
        if chosen not in out:
            out.append(chosen)
    return out

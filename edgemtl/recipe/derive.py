"""Recipes derived from a recipe: the student's (the teacher's with smaller encoders, fusion and trunk: a preset,
then the compress.student / compress.training overrides, validated against the sections they replace) and the
recipe of a fine-tuning phase."""
import dataclasses

from ..errors import EdgemtlError, did_you_mean
from .schema import ENCODERS, FusionSpec, Recipe, TrainingSpec, TrunkSpec
from .spec import to_plain, validate_spec, validate_variant

# A preset scales every width (filters, units, embedding sizes) of the teacher by one factor; parameters scale
# roughly with its square. Widths stay multiples of 4 so that 2:4 structured pruning can apply.
PRESETS = {"none": 1.0, "small": 0.5, "tiny": 0.25}
WIDTH_KEYS = ("filters", "units", "embedding_dim", "ff_dim")


def scale_width(value, factor: float):
    """A width (or a list of widths) times factor, a multiple of 4 and at least 4; factor 1 keeps it as it is."""
    if isinstance(value, (list, tuple)):
        return type(value)(scale_width(v, factor) for v in value)
    return value if factor == 1.0 else max(4, int(round(value * factor / 4)) * 4)


def _scaled(section: dict, factor: float) -> dict:
    return {k: scale_width(v, factor) if k in WIDTH_KEYS else v for k, v in section.items()}


def student_recipe(recipe: Recipe) -> Recipe:
    """The recipe the student is built from. Raises EdgemtlError listing every bad compress.student key."""
    cfg = recipe.compress
    spec, factor = cfg.student, PRESETS[cfg.student.preset]
    errors: list[str] = []
    names = [i.name for i in recipe.inputs]
    for name in spec.inputs:
        if name not in names:
            errors.append(f"compress.student.inputs.{name}: not an input of the recipe{did_you_mean(name, names)}")
    inputs = tuple(dataclasses.replace(inp, encoder=replaced_encoder(
        inp, spec.inputs.get(inp.name), factor, f"compress.student.inputs.{inp.name}", errors))
        for inp in recipe.inputs)
    _alternatives(spec, inputs, errors)
    fusion = validate_spec(FusionSpec, {**_scaled(recipe.fusion.to_dict(), factor), **to_plain(spec.fusion)},
                           "compress.student.fusion", errors)
    trunk = validate_spec(TrunkSpec, {**_scaled(recipe.trunk.to_dict(), factor), **to_plain(spec.trunk)},
                          "compress.student.trunk", errors)
    training = validate_spec(TrainingSpec, {**recipe.training.to_dict(), **to_plain(cfg.training)},
                             "compress.training", errors)
    if errors:
        raise EdgemtlError(*errors)
    tasks = recipe.tasks if spec.keep_auxiliary else tuple(t for t in recipe.tasks if not t.auxiliary)
    return dataclasses.replace(recipe, inputs=inputs, fusion=fusion, trunk=trunk, training=training,
                               tasks=tasks)


def replaced_encoder(inp, override, factor: float, path: str, errors: list):
    """inp's encoder with its widths times factor and the override's keys replacing its own; an override of another
    type starts from that type's defaults (keeping only the dropout)."""
    override = to_plain(override or {})
    base = inp.encoder.to_dict()
    new_type = override.get("type", base["type"]) != base["type"]
    encoder = {"dropout": base["dropout"]} if new_type else _scaled(base, factor)
    encoder.update({"weights": None, "trainable": True, **override})  # teacher weights do not fit a student
    return validate_variant(ENCODERS[inp.type], base["type"], encoder, path, errors)


def encoder_alternatives(student: Recipe) -> dict[str, tuple]:
    """compress.student.encoders as encoder specs: per input, the other encoders the latency search tries (each the
    student's encoder with the entry's keys; checked when the recipe loads)."""
    errors: list[str] = []
    out = _alternatives(student.compress.student, student.inputs, errors)
    if errors:
        raise EdgemtlError(*errors)
    return out


def _alternatives(spec, inputs: tuple, errors: list) -> dict[str, tuple]:
    if spec.target_ms is not None and spec.target_speedup is not None:
        errors.append("compress.student.target_speedup: give the latency budget once, as target_ms (milliseconds on "
                      "this machine) or target_speedup (times faster than the teacher), not both")
    no_budget = spec.target_ms is None and spec.target_speedup is None
    if spec.encoders and no_budget:
        errors.append("compress.student.encoders: only the latency search tries other encoders; set "
                      "compress.student.target_ms or target_speedup too (or remove compress.student.encoders)")
    if spec.over_budget != "error" and no_budget:
        errors.append("compress.student.over_budget: only the latency search has a budget to miss; set "
                      "compress.student.target_ms or target_speedup too (or remove compress.student.over_budget)")
    by_name = {i.name: i for i in inputs}
    out = {}
    for name, entries in spec.encoders.items():
        inp = by_name.get(name)
        if inp is None:
            errors.append(f"compress.student.encoders.{name}: not an input of the recipe{did_you_mean(name, by_name)}")
        elif inp.encoder is not None:  # else the student's own encoder is already reported
            out[name] = tuple(replaced_encoder(inp, entry, 1.0, f"compress.student.encoders.{name}.{k}", errors)
                              for k, entry in enumerate(entries))
    return out


def fine_tune_recipe(recipe: Recipe, epochs: int, learning_rate: float) -> Recipe:
    """The recipe of a fine-tuning phase (pruning, QAT): its own epochs and rate, no early stop."""
    training = recipe.training
    return dataclasses.replace(recipe, training=dataclasses.replace(
        training, epochs=epochs, learning_rate=learning_rate,
        early_stopping=dataclasses.replace(training.early_stopping, patience=None)))

"""The student's recipe: the teacher's recipe with smaller encoders, fusion and trunk (a preset, then overrides)."""
import copy

from ..errors import EdgemtlError
from ..recipe.schema import FUSION, TRAINING, TRUNK, encoder_spec
from ..recipe.spec import did_you_mean, validate

# A preset scales every width (filters, units, embedding sizes) of the teacher by one factor; parameters scale
# roughly with its square. Widths stay multiples of 4 so that 2:4 structured pruning can apply.
PRESETS = {"none": 1.0, "small": 0.5, "tiny": 0.25}
WIDTH_KEYS = ("filters", "units", "embedding_dim", "ff_dim")


def _scale(value, factor: float):
    if isinstance(value, list):
        return [_scale(v, factor) for v in value]
    return value if factor == 1.0 else max(4, int(round(value * factor / 4)) * 4)


def _scaled(section: dict, factor: float) -> dict:
    return {k: _scale(v, factor) if k in WIDTH_KEYS else v for k, v in section.items()}


def student_recipe(recipe: dict) -> dict:
    """The recipe the student is built from. Raises EdgemtlError listing every bad compress.student key."""
    cfg = recipe["compress"]
    spec, factor = cfg["student"], PRESETS[cfg["student"]["preset"]]
    out, errors = copy.deepcopy(recipe), []
    names = [i["name"] for i in out["inputs"]]
    for name in spec["inputs"]:
        if name not in names:
            errors.append(f"compress.student.inputs.{name}: not an input of the recipe{did_you_mean(name, names)}")
    for inp in out["inputs"]:
        override = spec["inputs"].get(inp["name"]) or {}
        new_type = override.get("type", inp["encoder"]["type"]) != inp["encoder"]["type"]
        encoder = {"dropout": inp["encoder"]["dropout"]} if new_type else _scaled(inp["encoder"], factor)
        encoder.update({"weights": None, "trainable": True, **override})  # teacher weights do not fit a student
        inp["encoder"] = validate(encoder_spec(inp["type"]), encoder, f"compress.student.inputs.{inp['name']}",
                                  errors)
    out["fusion"] = validate(FUSION, {**_scaled(out["fusion"], factor), **spec["fusion"]},
                             "compress.student.fusion", errors)
    out["trunk"] = validate(TRUNK, {**_scaled(out["trunk"], factor), **spec["trunk"]}, "compress.student.trunk",
                            errors)
    out["training"] = validate(TRAINING, {**out["training"], **cfg["training"]}, "compress.training", errors)
    if errors:
        raise EdgemtlError(*errors)
    if not spec["keep_auxiliary"]:
        out["tasks"] = [t for t in out["tasks"] if not t["auxiliary"]]
    return out


def check_smaller(student_params: int, teacher_params: int):
    if student_params >= teacher_params:
        raise EdgemtlError(f"compress.student: the student has {student_params:,} parameters, not fewer than the "
                           f"teacher's {teacher_params:,}; choose preset small or tiny, or smaller widths")

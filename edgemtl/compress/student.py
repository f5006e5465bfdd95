"""The student: its recipe (derived in edgemtl.recipe.derive) and the check that it is smaller than the teacher."""
from ..errors import EdgemtlError
from ..recipe.derive import PRESETS, WIDTH_KEYS, student_recipe  # noqa: F401


def check_smaller(student_params: int, teacher_params: int):
    if student_params >= teacher_params:
        raise EdgemtlError(f"compress.student: the student has {student_params:,} parameters, not fewer than the "
                           f"teacher's {teacher_params:,}; choose preset small or tiny, or smaller widths")

"""Optional inputs: the presence flag that says whether a row (or a request) has a value for an input.

An input with `optional: true` gets a second model input, `<name>_present` (float32, [batch, 1]: 1 present, 0
absent). Where it is 0 the graph replaces the encoder's vector by a learned "absent" vector (models/fusion.py), so
the placeholder fed for the missing value (zeros) never reaches the fusion. Data preparation, the model, export,
the parity gate, evaluation and the runtime all key presence by this one name rule. TF-free.
"""
from collections.abc import Iterable, Mapping

import numpy as np

PRESENT_SUFFIX = "_present"
PRESENCE_DTYPE = "float32"


def presence_name(input_name: str) -> str:
    return f"{input_name}{PRESENT_SUFFIX}"


def optional_inputs(recipe) -> list:
    return [i for i in recipe.inputs if getattr(i, "optional", False)]


def presence_names(recipe) -> set[str]:
    return {presence_name(i.name) for i in optional_inputs(recipe)}


def patterns(x: Mapping, input_names: Iterable[str]) -> np.ndarray:
    """The presence pattern of every row: the present inputs joined by '+' (e.g. 'image+title', 'title').
    x: model input arrays by name; an input without a presence array is always present."""
    names = list(input_names)
    n = len(next(iter(x.values())))
    present = {name: (np.asarray(x[presence_name(name)]).reshape(n) > 0.5 if presence_name(name) in x
                      else np.ones(n, bool)) for name in names}
    labels = ["+".join(name for name in names if present[name][i]) or "none" for i in range(n)]
    return np.array(labels, dtype=object)


def has_patterns(x: Mapping) -> bool:
    return any(k.endswith(PRESENT_SUFFIX) for k in x)

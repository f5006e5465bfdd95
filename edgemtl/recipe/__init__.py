"""The recipe: YAML validated into frozen dataclasses (schema.py), loaded and cross-checked (load.py)."""
from .load import load_recipe, recipe_hash, validate_recipe  # noqa: F401
from .schema import Recipe  # noqa: F401

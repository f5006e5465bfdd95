from .load import load_recipe, recipe_hash  # noqa: F401

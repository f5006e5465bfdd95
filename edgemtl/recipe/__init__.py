from .load import export_models, load_recipe, recipe_hash  # noqa: F401

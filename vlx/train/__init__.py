"""Training: recipes (config + task builder) and the shared Trainer."""

from vlx.train.recipe import RECIPES, Recipe, RecipeConfig, Task, TrainConfig, register_recipe
from vlx.train.trainer import Trainer

__all__ = ["RECIPES", "Recipe", "RecipeConfig", "Task", "TrainConfig", "register_recipe", "Trainer"]

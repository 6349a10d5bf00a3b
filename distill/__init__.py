"""distill: recipes, teachers, data, training, evaluation and the `distill run` pipeline."""

__version__ = "0.1.0"

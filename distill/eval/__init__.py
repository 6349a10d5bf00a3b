"""Evaluation: any predictor on any split, judged with the task's own parser and normaliser,
against gold and against the teacher, with speed and cost. Reports live in distill.report;
the `distill eval` command in distill.commands.eval."""

from distill.eval.runner import evaluate_predictors

__all__ = ["evaluate_predictors"]

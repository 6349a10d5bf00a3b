"""Inference engines behind the predictor contract (llama.cpp; onnxruntime)."""

from edge_runtime.engines.dispatch import bundle_predictor

__all__ = ["bundle_predictor"]

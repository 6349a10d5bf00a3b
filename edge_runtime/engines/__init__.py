"""Inference engines behind the predictor contract (llama.cpp; onnxruntime)."""

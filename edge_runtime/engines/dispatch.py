"""Which engine answers a verified bundle: its manifest says (`answers_with`, `head`)."""


def bundle_predictor(bundle, **kwargs):
    """The predictor a verified bundle answers with: its retriever (`retriever.npz`) or
    classifier head (`head.npz`) on llama.cpp embeddings, else the generative `LlamaCppPredictor`."""
    if bundle.manifest.get("answers_with") == "retriever":
        from edge_runtime.engines.retriever import LlamaCppRetrieverPredictor

        return LlamaCppRetrieverPredictor.from_bundle(bundle, **kwargs)
    if bundle.manifest.get("head"):
        from edge_runtime.engines.head import LlamaCppHeadPredictor

        return LlamaCppHeadPredictor.from_bundle(bundle, **kwargs)
    from edge_runtime.engines.llamacpp import LlamaCppPredictor

    return LlamaCppPredictor.from_bundle(bundle, **kwargs)

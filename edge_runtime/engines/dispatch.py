"""Which engine answers: for a verified bundle its manifest says (`answers_with`, `head`); for a
run's GGUF, the run's head file (the eval stage and `quantize sweep` judge a GGUF the way the
bundle will answer with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_runtime.layout import N_CTX


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


def gguf_predictor(gguf_path: str | Path, task, *, head: str | Path | None = None, name: str = "gguf",
                   n_ctx: int = N_CTX, lora_path: str | Path | None = None, **generation: Any):
    """The predictor for one GGUF (plus its LoRA adapter) answering as a bundle of it would: with
    the run's retriever (`retriever.npz`: the entries re-embedded by this GGUF) or classifier head
    (`head.npz`) when `head` is given, else by generating (`generation`: e.g. max_new_tokens)."""
    if head is not None:
        from edge_runtime.bundle import is_retriever_file

        head = Path(head)
        if is_retriever_file(head):
            from edge_runtime.engines.retriever import LlamaCppRetrieverPredictor
            from edge_runtime.retriever import RetrieverHead

            return LlamaCppRetrieverPredictor(gguf_path, task, RetrieverHead.load(head), name=name, n_ctx=n_ctx,
                                              embed_entries=True)
        from edge_runtime.engines.head import LlamaCppHeadPredictor
        from edge_runtime.heads import ClassifierHead

        return LlamaCppHeadPredictor(gguf_path, task, ClassifierHead.load(head), name=name, n_ctx=n_ctx,
                                     lora_path=lora_path, head_bytes=head.stat().st_size)
    from edge_runtime.engines.llamacpp import LlamaCppPredictor

    return LlamaCppPredictor(gguf_path, task, name=name, n_ctx=n_ctx, lora_path=lora_path, **generation)

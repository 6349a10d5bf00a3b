"""FAQ training prompts: shuffled candidate views, "none" when the answer was not retrieved,
validation in the retriever's order. Real StackFAQ rows and knowledge base, real BM25."""

from pathlib import Path

import pytest

from distill.pipeline.stages import load_splits
from distill.recipe import FaqTrainingConfig, load_recipe
from distill.train.data import IGNORE, encode_rows
from distill.train.faq_views import relabelled_none, training_views
from edge_runtime.retrieval import load_knowledge_base

FAQ_RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "faq-support.yaml"


@pytest.fixture(scope="module")
def faq():
    recipe = load_recipe(FAQ_RECIPE)
    train, _ = load_splits(recipe)
    rows = [{**r, "id": f"row-{i}", "answer": {"faq_id": r["faq_id"]}} for i, r in enumerate(train[:40])]
    return recipe.task, rows, load_knowledge_base(recipe.task.knowledge_base)


def _ids(context: str) -> list[str]:
    return [line[1:line.index("]")] for line in context.splitlines() if line.startswith("[")]


def test_views_shuffle_the_retrieved_candidates_and_keep_the_set(faq):
    task, rows, kb = faq
    cfg = FaqTrainingConfig(views=3, shuffle=True)
    moved = 0
    for row in rows:
        retrieved = [h for h, _ in kb.top_k(task.input_text(row), task.top_k)]
        views = training_views(task, row, cfg, seed=0)
        assert len(views) == 3
        for view_row, context in views:
            assert sorted(_ids(context)) == sorted(retrieved)
            assert view_row[task.input_field] == row[task.input_field]
        moved += sum(_ids(c) != retrieved for _, c in views)
    assert moved > len(rows)  # most views are not in the retriever's order
    assert training_views(task, rows[0], cfg, seed=0) == training_views(task, rows[0], cfg, seed=0)
    assert training_views(task, rows[0], cfg, seed=0) != training_views(task, rows[0], cfg, seed=1)
    unshuffled = training_views(task, rows[0], FaqTrainingConfig(), seed=0)  # the default keeps the order
    assert _ids(unshuffled[0][1]) == [h for h, _ in kb.top_k(task.input_text(rows[0]), task.top_k)]


def test_answer_not_retrieved_is_trained_as_none(faq):
    task, rows, kb = faq
    row = rows[0]
    retrieved = {h for h, _ in kb.top_k(task.input_text(row), task.top_k)}
    elsewhere = next(i for i in kb.ids if i not in retrieved)
    missing = {**row, "answer": {"faq_id": elsewhere}}
    (view_row, _), = training_views(task, missing, FaqTrainingConfig(), seed=0)
    assert view_row["answer"] == {"faq_id": "none"}
    (kept, _), = training_views(task, missing, FaqTrainingConfig(none_when_missing=False), seed=0)
    assert kept["answer"] == {"faq_id": elsewhere}
    (found, _), = training_views(task, row, FaqTrainingConfig(), seed=0)
    assert found["answer"] == row["answer"]
    assert relabelled_none([row, missing], task, FaqTrainingConfig()) == 1


def test_validation_rows_keep_the_retriever_order_and_never_leak_into_training(faq, tiny_tokenizer):
    task, rows, kb = faq
    enc = encode_rows(tiny_tokenizer, task, rows, 4096, 0.25, 0, faq=FaqTrainingConfig(views=2, shuffle=True))
    assert len(enc.val) == 10 and len(enc.train) == 2 * 30
    val_ids, train_ids = {e["id"] for e in enc.val}, {e["id"] for e in enc.train}
    assert not val_ids & train_ids
    by_id = {r["id"]: r for r in rows}
    for e in enc.val:  # the prompt lists the candidates exactly as eval and the runtime will
        n_prompt = e["labels"].count(IGNORE)
        prompt = tiny_tokenizer.decode(e["input_ids"][:n_prompt], skip_special_tokens=True)
        assert prompt == task.render_prompt(by_id[e["id"]])
    plain = encode_rows(tiny_tokenizer, task, rows, 4096, 0.25, 0)  # no faq config: the rows as they are
    assert len(plain.train) == 30 and [e["id"] for e in plain.val] == [e["id"] for e in enc.val]

"""Known phrasings: the curate stage attaches the kept training queries of a faq task to their
FAQ entries, the later stages retrieve from that enriched knowledge base, the eval split is
never indexed, and training prompts leave each query out of its own retrieval. Real StackFAQ
data through the real CLI (dataset teacher: no model needed)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from distill.cli import main
from distill.pipeline.runner import recipe_for_run
from distill.pipeline.stages import read_jsonl
from distill.recipe import FaqTrainingConfig, RecipeError, load_recipe
from distill.train.faq_views import training_views
from edge_runtime.retrieval import KnowledgeBase, load_knowledge_base, render_candidates, run_knowledge_base

ROOT = Path(__file__).resolve().parents[3]
FAQ_RECIPE = ROOT / "recipes" / "faq-support.yaml"
SMALL = ["--set", "data.split.train_size=150", "--set", "curate.index_queries=true"]


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("faq") / "run"
    assert main(["teach", str(FAQ_RECIPE), "--run-dir", str(run_dir), *SMALL]) == 0
    assert main(["curate", str(FAQ_RECIPE), "--run-dir", str(run_dir), *SMALL]) == 0
    return load_recipe(FAQ_RECIPE, [s for s in SMALL if s != "--set"]), run_dir


def test_curate_attaches_kept_training_queries_and_never_the_eval_split(curated):
    recipe, run_dir = curated
    outputs = json.loads((run_dir / "curate/record.json").read_text())["outputs"]
    assert outputs["knowledge_base"] == "curate/knowledge_base.jsonl"
    kept = read_jsonl(run_dir / "curate/train.jsonl")
    evals = read_jsonl(run_dir / "teach/eval.jsonl")
    enriched = load_knowledge_base(run_knowledge_base(run_dir))
    original = load_knowledge_base(recipe.task.knowledge_base)
    assert enriched.ids == original.ids
    indexed = {(e.id, q) for e in enriched.entries for q in e.queries}
    assert indexed == {(r["answer"]["faq_id"], r["query"].strip()) for r in kept}
    assert outputs["known_phrasings_added"] == len(indexed) > 100
    assert not {q for _, q in indexed} & {r["query"].strip() for r in evals}


def test_later_stages_retrieve_from_the_enriched_index(curated):
    recipe, run_dir = curated
    run_recipe = recipe_for_run(recipe, run_dir)
    assert Path(run_recipe.task.knowledge_base) == run_knowledge_base(run_dir).resolve()
    assert run_recipe.task.faq_ids == recipe.task.faq_ids and recipe.task.knowledge_base != run_recipe.task.knowledge_base
    evals = read_jsonl(run_dir / "teach/eval.jsonl")
    enriched = load_knowledge_base(run_recipe.task.knowledge_base)
    # an eval prompt lists what the enriched index retrieves for it
    for row in evals[:10]:
        assert render_candidates(enriched, enriched.top_k(row["query"], recipe.task.top_k)) in run_recipe.task.render_prompt(row)


def test_training_prompts_leave_each_query_out_of_its_own_retrieval(curated):
    recipe, run_dir = curated
    task = recipe_for_run(recipe, run_dir).task
    enriched = load_knowledge_base(task.knowledge_base)
    kept = read_jsonl(run_dir / "curate/train.jsonl")
    first = 0
    for row in kept[:40]:
        (_, context), = training_views(task, row, FaqTrainingConfig(), seed=0)
        others = KnowledgeBase([replace(e, queries=tuple(q for q in e.queries if q != row["query"].strip()))
                                for e in enriched.entries])
        assert context == render_candidates(enriched, others.top_k(row["query"], task.top_k))
        first += context.splitlines()[1].startswith(f"[{row['answer']['faq_id']}]")
    # its own words would put the gold first every time; left out, it is first less often
    assert first < 40 and sum(enriched.top_k(r["query"], 1)[0][0] == r["answer"]["faq_id"] for r in kept[:40]) == 40


def test_index_queries_needs_a_faq_task_with_a_knowledge_base():
    with pytest.raises(RecipeError, match="curate.index_queries"):
        load_recipe(ROOT / "recipes" / "receipts-small.yaml", ["curate.index_queries=true"])


def test_a_missing_enriched_file_names_the_stage_to_rerun(curated, tmp_path):
    _, run_dir = curated
    moved = tmp_path / "run"
    (moved / "curate").mkdir(parents=True)
    (moved / "curate/record.json").write_text((run_dir / "curate/record.json").read_text())
    with pytest.raises(FileNotFoundError, match="--from curate"):
        run_knowledge_base(moved)
    assert run_knowledge_base(tmp_path / "nowhere") is None

"""FAQ confidence combines the id's token probability with BM25's evidence over a real
knowledge base: an answer that is not retrieval's top entry is less certain, "none" is
judged by whether anything matched, and low confidence escalates to the teacher."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from edge_runtime.predictor import Prediction
from edge_runtime.router import Router, TeacherEndpoint, faq_confidence, retrieval_evidence
from edge_runtime.task import TaskSpec
from tests.edge_runtime.conftest import LiveServer
from edge_runtime.server_settings import ServerSettings

KB = [
    {"id": "kb-pw", "question": "How do I reset my password?", "answers": ["Click 'Forgot password' on the sign-in page."]},
    {"id": "kb-del", "question": "How do I delete my account?", "answers": ["Open Settings, then Account, then Delete."]},
    {"id": "kb-ship", "question": "How long does shipping take?", "answers": ["Orders arrive within 5 business days."]},
    {"id": "kb-refund", "question": "How do I get a refund for an order?", "answers": ["Ask for it on the order page within 30 days."]},
    {"id": "kb-email", "question": "How do I change the email address of my account?", "answers": ["Settings, then Profile, then Email."]},
]
QUERY = {"query": "change the email on my account"}  # kb-email first, kb-del (shares "account") second


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> TaskSpec:
    root = tmp_path_factory.mktemp("faq")
    (root / "kb.jsonl").write_text("".join(json.dumps(e) + "\n" for e in KB))
    spec = TaskSpec(name="faq", kind="faq", input_field="query", knowledge_base="kb.jsonl", top_k=3,
                    instructions="Answer with the id of the FAQ entry that answers the question, or \"none\".")
    assert spec.attach_knowledge_base(root) == []
    return spec


def test_answer_that_is_not_the_top_retrieval_is_less_confident(task):
    top, top_parts = faq_confidence(task, QUERY, "kb-email", 0.9)
    second, second_parts = faq_confidence(task, QUERY, "kb-del", 0.9)
    assert top_parts["rank"] == 1 and top_parts["top_id"] == "kb-email" and second_parts["rank"] == 2
    assert top_parts["chosen_score"] == top_parts["top_score"] > second_parts["chosen_score"] > 0
    assert top_parts["retrieval"] > 0.5 > second_parts["retrieval"] > 0  # share against the strongest rival
    assert top > second
    for conf, parts in ((top, top_parts), (second, second_parts)):
        assert conf == pytest.approx(math.sqrt(parts["token"] * parts["retrieval"]), abs=1e-3)
    # an entry sharing no word with the query has no retrieval support at all
    assert faq_confidence(task, QUERY, "kb-ship", 0.99)[0] == 0.0


def test_none_answers_are_judged_by_what_matched(task):
    off_topic = retrieval_evidence(task, {"query": "zzqx wvvb"}, "none")
    assert off_topic == {"top_id": None, "top_score": 0.0, "retrieval": 1.0}
    on_topic = retrieval_evidence(task, {"query": "reset my password"}, "none")
    assert on_topic["top_id"] == "kb-pw" and on_topic["retrieval"] == 0.0  # every query word is in kb-pw
    partly = retrieval_evidence(task, {"query": "reset my wifi router"}, "none")
    assert 0.0 < partly["retrieval"] < 1.0
    assert faq_confidence(task, {"query": "zzqx wvvb"}, "none", 0.8)[0] == pytest.approx(math.sqrt(0.8))
    # without a knowledge base the token probability stands alone
    bare = TaskSpec(name="faq", kind="faq", input_field="query", instructions="Pick.", faq_ids=["a", "b"])
    assert faq_confidence(bare, QUERY, "a", 0.7) == (0.7, {"token": 0.7, "retrieval": None})


def _teacher():
    from fastapi import FastAPI

    app = FastAPI()
    app.state.calls = 0

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        app.state.calls += 1
        return {"choices": [{"message": {"role": "assistant", "content": '{"faq_id": "kb-email"}'}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 8}}

    @app.get("/healthz")
    async def health():
        return {}

    return app


def test_weak_retrieval_support_escalates_below_the_threshold(task):
    with LiveServer(_teacher()) as teacher:
        router = Router(task, 0.6, TeacherEndpoint(teacher.url + "/v1", "big"))
        bodies = {}
        for faq_id in ("kb-email", "kb-del"):
            conf, parts = faq_confidence(task, QUERY, faq_id, 0.9)
            student = Prediction(answer={"faq_id": faq_id}, confidence=conf, extra={"confidence_parts": parts})
            bodies[faq_id] = router.route(QUERY, student)
        kept, escalated = bodies["kb-email"], bodies["kb-del"]
        assert kept["source"] == "student" and not kept["low_confidence"] and kept["confidence"] >= 0.6
        assert kept["confidence_parts"]["rank"] == 1
        assert escalated["source"] == "teacher" and escalated["escalated"] and escalated["student_confidence"] < 0.6
        assert escalated["answer"] == {"faq_id": "kb-email"} and escalated["confidence_parts"]["rank"] == 2
        assert teacher.app.state.calls == 1 and router.stats.escalations == 1


def test_task_endpoint_returns_confidence_and_its_parts(task, gemma_gguf, tmp_path):
    from edge_runtime.bundle import ServeSettings, pack
    from edge_runtime.server import create_app

    bundle = pack(gemma_gguf, task, tmp_path / "faq-bundle",
                  serve=ServeSettings(n_ctx=1024, max_new_tokens=24, confidence_threshold=0.5))
    app = create_app(bundle, ServerSettings(n_threads=2))
    try:
        with LiveServer(app) as live:
            r = httpx.post(live.url + "/v1/tasks/faq", json={"input": QUERY["query"]}, timeout=300)
            assert r.status_code == 200, r.text
            body = r.json()
    finally:
        app.state.close()
    parts = body["confidence_parts"]
    assert body["answer"]["faq_id"] in [e["id"] for e in KB] + ["none"]
    assert 0.0 < parts["token"] <= 1.0 and 0.0 <= parts["retrieval"] <= 1.0 and parts["top_id"] == "kb-email"
    assert body["confidence"] == pytest.approx(math.sqrt(parts["token"] * parts["retrieval"]), abs=2e-3)
    assert body["low_confidence"] == (body["confidence"] < 0.5)
    assert body["field_confidence"]["faq_id"] == pytest.approx(body["confidence"], abs=1e-4)

"""OpenAI `response_format` through the official `openai` client against a real server on
loopback: structured output from the schema decoder, and clear 400s for what it cannot do."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edge_runtime.structured import ResponseFormatError, schema_of

from tests.edge_runtime.conftest import LiveServer
from edge_runtime.server_settings import ServerSettings

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "mood": {"type": "string", "enum": ["happy", "sad", "开心"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(sentiment_bundle):
    from openai import OpenAI

    from edge_runtime.server import create_app

    app = create_app(sentiment_bundle, ServerSettings(n_threads=2, max_tokens_cap=96))
    with LiveServer(app) as live:
        yield OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)


def test_chat_json_schema_answers_validate(client):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for text in ("Anna is 31 and feels great today.", "老王今年六十岁，很开心。"):
        out = client.chat.completions.create(model="m", max_tokens=64, response_format=fmt,
                                             messages=[{"role": "user", "content": f"Describe as JSON: {text}"}])
        choice = out.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        jsonschema.validate(json.loads(choice.message.content), PERSON)
        assert out.usage.completion_tokens > 0


def test_completion_json_object(client):
    out = client.completions.create(model="m", prompt="A JSON object describing a cat:\n", max_tokens=48,
                                    extra_body={"response_format": {"type": "json_object"}})
    text = out.choices[0].text
    if out.choices[0].finish_reason == "stop":  # cut at max_tokens it may be unfinished, never malformed
        assert isinstance(json.loads(text), dict)
    assert text.startswith("{")


@pytest.mark.parametrize("fmt, stream, says", [
    ({"type": "xml"}, False, "not supported"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, False, "needs"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "strnig"}}}}},
     False, "schema"),
    ({"type": "json_object"}, True, "stream"),
])
def test_unusable_response_formats_are_400(client, fmt, stream, says):
    from openai import BadRequestError

    with pytest.raises(BadRequestError) as err:
        client.chat.completions.create(model="m", max_tokens=8, response_format=fmt, stream=stream,
                                       messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400 and says in err.value.response.json()["error"]


def test_schema_of_reads_the_openai_forms():
    assert schema_of(None) is None and schema_of({"type": "text"}) is None
    assert schema_of({"type": "json_object"}) == {"type": "object"}
    assert schema_of({"type": "json_schema", "json_schema": {"schema": PERSON}}) == PERSON
    with pytest.raises(ResponseFormatError, match="characters"):
        schema_of({"type": "json_schema", "json_schema": {"schema": {"enum": ["x" * 60_000]}}})

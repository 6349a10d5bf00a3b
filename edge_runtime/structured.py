"""OpenAI `response_format` on the server's completion and chat endpoints: the request's JSON
schema decoded by the same schema decoder the task endpoint uses (engines/decoding.py), so a
client's structured output always parses and runs at the speed of free decoding.

Accepted, as in OpenAI's API: `{"type": "text"}` (no constraint), `{"type": "json_object"}` (any
JSON object) and `{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`.
Structured answers are decoded greedily (temperature and top_p do not apply) and not streamed.
"""

from __future__ import annotations

from typing import Any

MAX_SCHEMA_CHARS = 50_000  # a schema larger than this is refused before it is compiled


class ResponseFormatError(ValueError):
    """A response_format the server cannot honour; the message says what to send instead."""


def schema_of(response_format: dict[str, Any] | None, stream: bool = False) -> dict[str, Any] | None:
    """The JSON schema a request's response_format asks for; None for plain text."""
    schema = _schema(response_format)
    if schema is not None and stream:
        raise ResponseFormatError("response_format with stream: true is not supported; send stream: false")
    return schema


def _schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ResponseFormatError("response_format must be an object such as {\"type\": \"json_object\"}")
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ResponseFormatError("response_format json_schema needs {\"json_schema\": {\"name\": ..., \"schema\": {...}}}")
        import json

        if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
            raise ResponseFormatError(f"the response_format schema is over {MAX_SCHEMA_CHARS} characters")
        return schema
    raise ResponseFormatError(f"response_format type {kind!r} is not supported; use text, json_object or json_schema")


def chat_prompt(llm: Any, messages: list[dict[str, str]], plain: str) -> tuple[str, bool]:
    """The prompt text a chat becomes for structured decoding, and whether it holds special
    tokens to parse: the model's own chat template when it has one, else `plain` (the server's
    plain `Role: text` rendering, for the toolkit's base students)."""
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return plain, False
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    piece = lambda t: llm.detokenize([t], special=True).decode("utf-8", errors="ignore")  # noqa: E731
    formatter = Jinja2ChatFormatter(template=template, eos_token=piece(llm.token_eos()), bos_token=piece(llm.token_bos()))
    return formatter(messages=messages).prompt, True

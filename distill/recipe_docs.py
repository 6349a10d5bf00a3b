"""The recipe's reference, read from its models: every field with its type, default and description.

The descriptions live on the pydantic fields in `distill/recipe.py` (and the task spec's in
`edge_runtime/task.py`), so the reference page, `distill validate --explain` and the test that
every field is documented all read one source and cannot drift apart.

    python -m distill.recipe_docs            write docs/recipe-reference.md
    python -m distill.recipe_docs --check    exit 1 when the committed page is stale
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from distill.recipe import Recipe

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "recipe-reference.md"
REGENERATE = "python -m distill.recipe_docs"


@dataclass(frozen=True)
class FieldDoc:
    """One field of one model, as the reference and `--explain` show it."""

    path: str  # dotted, from the recipe's root: student.lora.r
    model: type[BaseModel]
    name: str
    info: FieldInfo

    @property
    def description(self) -> str:
        return self.info.description or ""

    @property
    def type(self) -> str:
        return type_name(self.info.annotation)

    @property
    def default(self) -> str:
        return default_text(self.info)


@dataclass(frozen=True)
class Section:
    """A model reached from the recipe's root, with the fields it declares."""

    path: str  # "" for the recipe itself; `teacher` sections carry their kind in `title`
    title: str
    model: type[BaseModel]
    fields: list[FieldDoc]


# ---------------------------------------------------------------------------- reading the models


def _args(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _unwrap(annotation: Any) -> Any:
    """Strip `Annotated[...]` (the discriminated teacher union is one)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = _args(annotation)[0]
    return annotation


def nested_models(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models a field holds, each with the path suffix that reaches its fields:
    "" for a section (or optional section), "[]" for a list item, ".<name>" for a mapping's value."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    origin = typing.get_origin(annotation)
    if _is_union(annotation):
        return [found for arg in _args(annotation) for found in nested_models(arg)]
    if origin is list:
        return [("[]" + suffix, m) for suffix, m in nested_models(_args(annotation)[0])]
    if origin is dict:
        return [(".<name>" + suffix, m) for suffix, m in nested_models(_args(annotation)[1])]
    return []


def type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's type: `int | None`, `list[str]`, `"lora" | "qlora"`."""
    annotation = _unwrap(annotation)
    if annotation is type(None):
        return "None"
    if _is_union(annotation):
        return " | ".join(type_name(a) for a in _args(annotation))
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in _args(annotation))
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in _args(annotation))}]"
    if annotation is typing.Any:
        return "any"
    if isinstance(annotation, type):
        return "path" if issubclass(annotation, Path) else annotation.__name__
    return str(annotation).replace("typing.", "")


def default_text(info: FieldInfo) -> str:
    """`required`, `(section)` for a nested model's defaults, else the default as JSON."""
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel) and isinstance(getattr(value, "kind", None), str):
        return f"(kind: {value.kind})"  # the teacher's default is a kind, not a section of defaults
    return value_text(value)


def value_text(value: Any) -> str:
    """A value as JSON; a nested section as `(section)`, a list or mapping of them by its size
    (their fields are rows of their own)."""
    if isinstance(value, BaseModel):
        return "(section)"
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    if any(isinstance(item, BaseModel) for item in items):
        return f"({len(items)} entries)"
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def sections(model: type[BaseModel] = Recipe, path: str = "", title: str = "") -> Iterator[Section]:
    """Every model under `model`, depth first in field order, each with its own fields."""
    fields = [FieldDoc(f"{path}.{name}" if path else name, model, name, info)
              for name, info in model.model_fields.items()]
    yield Section(path, title or (f"`{path}`" if path else "the recipe (top level)"), model, fields)
    for doc in fields:
        found = nested_models(doc.info.annotation)
        for suffix, sub in found:
            sub_path = doc.path + suffix
            kind = sub.model_fields.get("kind")
            variant = len(found) > 1 and kind is not None and typing.get_origin(kind.annotation) is typing.Literal
            sub_title = f"`{sub_path}` (kind: {_args(kind.annotation)[0]})" if variant else ""
            yield from sections(sub, sub_path, sub_title)


def all_fields(model: type[BaseModel] = Recipe) -> list[FieldDoc]:
    """Every field of every model the recipe is made of (each teacher kind's, each nested section's)."""
    return [doc for section in sections(model) for doc in section.fields]


def undocumented(model: type[BaseModel] = Recipe) -> list[str]:
    """`path (Model.field)` of each field without a description."""
    return [f"{d.path} ({d.model.__name__}.{d.name})" for d in all_fields(model) if not d.description.strip()]


# ---------------------------------------------------------------------------- a resolved recipe


def explain_rows(recipe: BaseModel, path: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(path, resolved value, default, description) for each field of a loaded recipe, nested
    sections descended into (the teacher's fields are those of its kind; list items are `[i]`)."""
    for name, info in type(recipe).model_fields.items():
        here = f"{path}.{name}" if path else name
        value = getattr(recipe, name)
        yield here, value_text(value), default_text(info), info.description or ""
        if isinstance(value, BaseModel):
            yield from explain_rows(value, here)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from explain_rows(item, f"{here}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from explain_rows(item, f"{here}.{key}")


# ---------------------------------------------------------------------------- the reference page


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """Code-formatted, except the words that stand for no value (`required`, `(section)`)."""
    if not text or text == "required" or text.startswith("("):
        return _cell(text)
    return f"`{_cell(text)}`"


def render_reference() -> str:
    """docs/recipe-reference.md's text, generated from the models."""
    out = [
        "# Recipe reference",
        "",
        f"<!-- generated by `{REGENERATE}` from distill/recipe.py and edge_runtime/task.py: edit the field "
        "descriptions there, not this file -->",
        "",
        "Every key a recipe YAML accepts, section by section: its type, its default and what it does. "
        "Unknown keys are errors. `distill validate RECIPE --explain` shows the same descriptions beside a "
        "recipe's resolved values. A `.<name>` in a path is a key you choose (an extraction field's name); "
        "`[]` is an item of a list.",
        "",
    ]
    for section in sections():
        out += [f"## {section.title}", ""]
        doc = (section.model.__doc__ or "").strip()
        if doc and section.model is not Recipe:
            out += [" ".join(doc.split()), ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for f in section.fields:
            out.append(f"| `{f.path}` | {_code(f.type)} | {_code(f.default)} | {_cell(f.description)} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill.recipe_docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the reference page is stale")
    parser.add_argument("--out", type=Path, default=REFERENCE, help=f"where to write (default: {REFERENCE})")
    args = parser.parse_args(argv)
    missing = undocumented()
    if missing:
        print("these recipe fields have no description; add Field(..., description=\"what it does, unit, why "
              "this default\") to each:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    text = render_reference()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            state = "is missing" if current is None else "is stale (the recipe models changed since it was written)"
            print(f"{args.out} {state}: run `{REGENERATE}` and commit the result", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(all_fields())} fields)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

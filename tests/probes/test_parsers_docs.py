"""docs/parsers.md lists every kind and every key the parsers return."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import BaseModel

from harness.probes.parsers import PARSERS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "parsers.md").read_text()


def keys(model: type[BaseModel]) -> set[str]:
    found = set()
    for name, field in model.model_fields.items():
        found.add(name)
        for arg in typing.get_args(field.annotation) or (field.annotation,):
            for inner in typing.get_args(arg) or (arg,):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found |= keys(inner)
    return found


def test_every_kind_and_key_is_documented():
    for kind, parser in PARSERS.items():
        assert f"## `{kind}`" in DOC
        model = typing.get_type_hints(parser)["return"]
        missing = sorted(
            key
            for key in keys(model)
            if not any(f"{p}{key}{s}" in DOC for p in ("`", ".") for s in ("`", "[", "{"))
        )
        assert not missing, f"{kind}: undocumented keys {missing}"

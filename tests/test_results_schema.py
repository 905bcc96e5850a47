"""docs/results-schema.md documents exactly the fields of the result record and of the run."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from harness.record import ResultRecord, RunInfo

DOC = Path(__file__).resolve().parent.parent / "docs" / "results-schema.md"


def _fields(kind: type) -> dict[str, typing.Any]:
    if issubclass(kind, BaseModel):
        return {name: field.annotation for name, field in kind.model_fields.items()}
    hints = typing.get_type_hints(kind)
    return {field.name: hints[field.name] for field in dataclasses.fields(kind)}


def _is_record_type(kind: typing.Any) -> bool:
    return isinstance(kind, type) and (issubclass(kind, BaseModel) or dataclasses.is_dataclass(kind))


def field_paths(kind: type, prefix: str = "", seen: set[type] | None = None) -> set[str]:
    """Every field path of ``kind``: ``memory.peak_rss_mb``, ``sustained.points[].offset_s``,
    ``accuracy.slices.*.samples``. A type met again (e.g. a second LatencySummary) is documented
    once, where it first appears."""
    seen = set() if seen is None else seen
    seen.add(kind)
    paths: set[str] = set()
    for name, annotation in _fields(kind).items():
        path = f"{prefix}{name}"
        paths.add(path)
        nested, suffix = annotation, ""
        for _ in range(3):
            origin = typing.get_origin(nested)
            args = [a for a in typing.get_args(nested) if a is not type(None)]
            if origin in (typing.Union, types.UnionType) and len(args) == 1:
                nested = args[0]
            elif origin in (tuple, list) and args:
                nested, suffix = args[0], suffix + "[]"
            elif origin is dict and len(args) == 2:
                nested, suffix = args[1], suffix + ".*"
        if _is_record_type(nested) and nested not in seen:
            paths |= field_paths(nested, f"{path}{suffix}.", seen)
    return paths


def documented() -> dict[str, set[str]]:
    """Section -> the keys its table names (each backticked name in the first column)."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## (.+)$", line)
        if heading:
            current = heading.group(1).strip("` ")
            sections[current] = set()
        elif current and line.startswith("| `"):
            first = line.split("|")[1]
            sections[current] |= set(re.findall(r"`([^`]+)`", first))
    return sections


def test_the_record_and_its_documentation_agree():
    sections = documented()
    paths = set()
    for section, keys in sections.items():
        if section in ("Document", "Run"):
            continue
        prefix = "" if section == "Record" else section + "."
        paths |= {prefix + key for key in keys}
    expected = field_paths(ResultRecord)
    assert sorted(expected - paths) == [], "record fields missing from docs/results-schema.md"
    assert sorted(paths - expected) == [], "documented keys that the record does not have"


def test_the_run_and_its_documentation_agree():
    assert documented()["Run"] == set(RunInfo.model_fields)
    assert documented()["Document"] == {"schema_version", "run", "results"}

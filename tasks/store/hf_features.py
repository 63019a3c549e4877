"""The Hugging Face ``features`` of a JSON Lines file, for a dataset card's YAML header.

``datasets`` reads a JSON Lines file block by block and fails when two blocks disagree
(a field that is a number here and a string there, a dict that gains a key late); the
Hub's viewer reads it the same way. Declaring the features in the card makes every block
cast to one schema. They are inferred here from every row, in one streaming pass:

- ``None`` is ``null`` and gives way to any other type; ``int`` and ``float`` merge as
  ``float64``; dicts merge field by field (a field a row lacks reads as null);
- a list's items merge into one item type;
- what cannot merge (a string and a dict, a bool and a number), and an empty dict, is
  declared ``json``: ``datasets`` keeps such a value as it was written.

The result is the list ``Features._to_yaml_list()`` writes: ``[{"name", "dtype" |
"struct" | "list"}]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A type is a small tree: ("null",), ("bool",), ("int64",), ("float64",), ("string",),
# ("json",), ("list", item), ("struct", {name: type}) with fields in first-seen order.
Type = tuple[Any, ...]

NULL: Type = ("null",)
JSON: Type = ("json",)


def type_of(value: Any) -> Type:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return ("bool",)
    if isinstance(value, int):
        return ("int64",) if -(2**63) <= value < 2**63 else JSON
    if isinstance(value, float):
        return ("float64",)
    if isinstance(value, str):
        return ("string",)
    if isinstance(value, list | tuple):
        item: Type = NULL
        for v in value:
            item = merge(item, type_of(v))
        return ("list", item)
    if isinstance(value, Mapping):
        if not value:
            return JSON
        return ("struct", {str(k): type_of(v) for k, v in value.items()})
    return JSON


def merge(a: Type, b: Type) -> Type:
    """The one type both values can be read as."""
    if a == NULL:
        return b
    if b == NULL or a == b:
        return a
    if JSON in (a, b):
        return JSON
    if {a[0], b[0]} == {"int64", "float64"}:
        return ("float64",)
    if a[0] == b[0] == "list":
        return ("list", merge(a[1], b[1]))
    if a[0] == b[0] == "struct":
        fields = dict(a[1])
        for name, kind in b[1].items():
            fields[name] = merge(fields.get(name, NULL), kind)
        return ("struct", fields)
    return JSON


def _yaml_of(kind: Type) -> dict[str, Any]:
    """One feature's body: ``{"dtype": ...}``, ``{"list": ...}`` or ``{"struct": [...]}``."""
    if kind[0] == "struct":
        return {"struct": _fields(kind[1])}
    if kind[0] == "list":
        item = _yaml_of(kind[1])
        return {"list": item["dtype"] if "dtype" in item else _list_body(item)}
    return {"dtype": kind[0]}


def _list_body(item: dict[str, Any]) -> Any:
    # datasets writes a list of structs as the struct's field list, a list of lists nested
    return item["struct"] if "struct" in item else item


def _fields(fields: Mapping[str, Type]) -> list[dict[str, Any]]:
    return [{"name": name, **_yaml_of(kind)} for name, kind in fields.items()]


class FeatureInference:
    """Feed rows (dicts); ``features()`` is the YAML list of the columns seen so far."""

    def __init__(self) -> None:
        self.row_type: Type = ("struct", {})
        self.rows = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self.row_type = merge(
            self.row_type, ("struct", {str(k): type_of(v) for k, v in row.items()})
        )
        self.rows += 1

    def features(self) -> list[dict[str, Any]]:
        return _fields(self.row_type[1])


def jsonl_features(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """The features and row count of a JSON Lines file (read a line at a time)."""
    inference = FeatureInference()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                inference.add(json.loads(line))
    return inference.features(), inference.rows

"""Cache keys: a canonical, process-independent form of values, hashed.

A key is the SHA-256 of a canonical JSON text, so it never contains what it was made from
(prompts, arguments, API keys in a message): only the hash goes to a store. Values compare
the way :func:`llmc.batching.call_key` compares them within one run (by type and value:
``1``, ``1.0`` and ``True`` differ, so do a list and a tuple; a dict's order does not
matter), but the canonical form is text rather than a tuple of Python objects, because a
cache outlives the process: ``call_key`` holds classes and frozensets, whose order and
identity change from one process to the next.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

#: Part of every key: a change to how keys are made changes every key, so old entries miss.
KEY_VERSION = "llmc-cache-1"


class Unkeyable(Exception):
    """A value without a canonical form (an object of another class, a NaN): not cached."""


def canonical(value: Any) -> Any:
    """A JSON-ready form of ``value`` that is equal for equal values and only for them.

    Strings, ints, bools and None stand for themselves (JSON tells ``1``, ``1.0`` and
    ``true`` apart); floats become their ``repr``; lists, tuples, dicts, sets, bytes,
    dataclasses and pydantic models become tagged lists.

    Raises:
        Unkeyable: ``value`` holds NaN or an object of another class.
    """
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float:
        if math.isnan(value):
            raise Unkeyable("NaN equals nothing, not even itself")
        return ["f", repr(value)]
    if cls is list:
        return ["l", [canonical(item) for item in value]]
    if cls is tuple:
        return ["t", [canonical(item) for item in value]]
    if cls is dict or isinstance(value, Mapping):
        return ["d", _sorted([canonical(k), canonical(v)] for k, v in value.items())]
    if cls is set or cls is frozenset:
        return ["s" if cls is set else "fs", _sorted(canonical(item) for item in value)]
    if cls is bytes:
        return ["b", value.hex()]
    if cls is complex:
        return ["c", repr(value)]
    name = f"{cls.__module__}.{cls.__qualname__}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return ["o", name, canonical(fields)]
    dump = getattr(value, "model_dump", None)  # a pydantic model: its class and its fields
    if dump is not None and hasattr(cls, "model_fields"):
        return ["o", name, canonical(dump())]
    raise Unkeyable(f"no canonical form for a {name}")


def _sorted(items: Any) -> list[Any]:
    return sorted(items, key=_text)


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def digest(*parts: Any) -> str:
    """The hex SHA-256 of the parts' canonical form (with :data:`KEY_VERSION`).

    Raises:
        Unkeyable: a part has no canonical form.

    Example:
        >>> digest("tool", "search", {"query": "x"}) == digest("tool", "search", {"query": "x"})
        True
        >>> digest("f", 1) == digest("f", 1.0)
        False
    """
    text = _text([KEY_VERSION, *(canonical(part) for part in parts)])
    return hashlib.sha256(text.encode()).hexdigest()

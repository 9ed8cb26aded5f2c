"""How cached values become bytes and back: tagged JSON by default, pickle on request.

JSON keeps a shared cache (Redis, a file others can write) from being a way to run code:
decoding JSON builds only data. The tags keep Python's types: a tuple comes back a tuple,
bytes come back bytes, a dict with int keys keeps them. Values of other classes cannot be
stored as JSON; such an output is simply not cached. ``pickle`` stores anything picklable,
for caches only trusted processes can write.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any, Literal

_JSON = b"j"
_PICKLE = b"p"


class Unencodable(Exception):
    """A value the codec cannot store (it is then not cached)."""


class Codec:
    """Encodes values for a store and decodes them back.

    Args:
        kind: ``"json"`` (tagged JSON, safe to share) or ``"pickle"`` (any picklable value;
            only for stores that no one else can write: unpickling runs code).
    """

    def __init__(self, kind: Literal["json", "pickle"] = "json") -> None:
        if kind not in ("json", "pickle"):
            raise ValueError(f"codec must be 'json' or 'pickle', not {kind!r}")
        self.kind = kind

    def encode(self, value: Any) -> bytes:
        """The bytes that store ``value``.

        Raises:
            Unencodable: the value has a type the codec does not store.
        """
        if self.kind == "pickle":
            try:
                return _PICKLE + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise Unencodable(f"cannot pickle {type(value).__name__}: {exc}") from exc
        try:
            text = json.dumps(_tag(value), ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError) as exc:  # an int past the digit limit, deep nesting
            raise Unencodable(f"cannot store {type(value).__name__} as JSON: {exc}") from exc
        return _JSON + text.encode()

    def decode(self, data: bytes) -> Any:
        """The value stored in ``data``.

        Raises:
            ValueError: the bytes are not what this codec wrote (a corrupted entry, or one
                written with pickle when this codec is JSON).
        """
        kind, body = data[:1], data[1:]
        if kind == _JSON:
            return _untag(json.loads(body))
        if kind == _PICKLE and self.kind == "pickle":
            return pickle.loads(body)
        raise ValueError(f"an entry in an unknown or refused format ({kind!r})")


def _tag(value: Any) -> Any:
    cls = value.__class__
    if cls is str or cls is int or cls is bool or value is None:
        return value
    if cls is float:
        return value if math.isfinite(value) else {"$f": repr(value)}
    if cls is list:
        return [_tag(item) for item in value]
    if cls is dict:
        if all(key.__class__ is str and key != "$" and not key.startswith("$") for key in value):
            return {key: _tag(item) for key, item in value.items()}
        return {"$d": [[_tag(k), _tag(v)] for k, v in value.items()]}
    if cls is tuple:
        return {"$t": [_tag(item) for item in value]}
    if cls is bytes:
        return {"$b": value.hex()}
    if cls is set or cls is frozenset:
        return {"$s" if cls is set else "$fs": [_tag(item) for item in value]}
    raise Unencodable(f"a {cls.__name__} cannot be stored as JSON (use codec='pickle')")


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, body),) = value.items()
        if tag == "$f":
            return float(body)
        if tag == "$d":
            return {_untag(k): _untag(v) for k, v in body}
        if tag == "$t":
            return tuple(_untag(item) for item in body)
        if tag == "$b":
            return bytes.fromhex(body)
        if tag == "$s":
            return {_untag(item) for item in body}
        if tag == "$fs":
            return frozenset(_untag(item) for item in body)
    return {key: _untag(item) for key, item in value.items()}

"""Field declarations and value checks of :mod:`modalmerge.settings` (stdlib only).

A settings field is a dataclass field whose metadata holds its one-line
``doc`` and its constraints: ``choices`` (allowed values), ``ge`` / ``gt`` /
``le`` (numeric bounds; for a tuple, of each item), ``pattern`` (a regular
expression a string must match), ``items`` (a "selection": a non-empty
regular expression or a non-empty list of values of these types) and
``hint`` (an extra sentence for a refused value). The same metadata generate
the JSON schema (:mod:`modalmerge.settings_schema`).
"""

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping

MISSING = dataclasses.MISSING
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TYPE_WORDS[dict] = "a mapping"


def field_spec(
    default=MISSING,
    *,
    doc: str,
    choices: tuple | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
    items: tuple | None = None,
    hint: dict | None = None,
    resource: bool = False,
):
    """A dataclass field with its doc and constraints in ``metadata`` (mutable defaults copied).

    ``resource=True`` marks a resource knob (threads, workers, memory): how a job runs, not
    what it computes, so it never enters a stage's identity (:func:`modalmerge.settings.identity_dict`).
    """
    spec = {"doc": doc, "choices": choices, "ge": ge, "gt": gt, "le": le}
    spec |= {"pattern": pattern, "items": items, "hint": hint, "resource": resource or None}
    metadata = {k: v for k, v in spec.items() if v is not None}
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def type_parts(tp) -> tuple[type | typing.Any, bool]:
    """``(base type, optional)`` of a field type: ``float | None`` -> ``(float, True)``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = typing.get_args(tp)
        base = [a for a in args if a is not type(None)]
        return (base[0] if len(base) == 1 else tuple(base)), type(None) in args
    return tp, False


def build(cls, mapping: Mapping | None, path: str):
    """``cls(**mapping)`` after refusing unknown keys and missing required ones by path."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{path}: must be a mapping, got {show(mapping)}")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValueError(f"{path}.{unknown[0]}: unknown key; known keys: {', '.join(names)}")
    for f in fields:
        if f.default is MISSING and f.default_factory is MISSING and f.name not in mapping:
            raise ValueError(f"{path}.{f.name}: required")
    return cls(**mapping, path=path)


def check_fields(obj, path: str) -> None:
    """Check every field of the dataclass ``obj`` in place (ints become floats where a
    number is expected, lists tuples where a tuple is); ValueError names the key path."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        checked = check_value(value, f.type, f.metadata, f"{path}.{f.name}")
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


def check_value(value, tp, meta: Mapping, where: str):
    """``value`` checked against the field type ``tp`` and the constraints in ``meta``."""
    base, optional = type_parts(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: {expectation(base, meta, optional)}, got null")
    if "items" in meta:
        return _selection(value, meta["items"], where)
    if typing.get_origin(base) is tuple:
        return _sequence(value, typing.get_args(base)[0], meta, where, optional)
    if dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return value
        return build(base, value, where)
    _typed(value, base, meta, where, optional)
    _constraints(value, meta, where, optional)
    if base is float:
        return float(value)
    return dict(value) if base is dict and not isinstance(value, dict) else value


def _typed(value, base, meta, where, optional) -> None:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, Mapping),
    }[base]
    if not ok:
        raise ValueError(f"{where}: {expectation(base, meta, optional)}, got {show(value)}")


def _constraints(value, meta, where, optional) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        hint = meta.get("hint", {}).get(value)
        extra = f" ({hint})" if hint else ""
        raise ValueError(f"{where}: {expectation(str, meta, optional)}, got {show(value)}{extra}")
    bounds = (("ge", lambda v, b: v >= b), ("gt", lambda v, b: v > b), ("le", lambda v, b: v <= b))
    for key, holds in bounds:
        if key in meta and not holds(value, meta[key]):
            raise ValueError(f"{where}: {bound_words(meta, optional)}, got {show(value)}")
    if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
        raise ValueError(f"{where}: must match {meta['pattern']}, got {show(value)}")


def _sequence(value, item_type, meta, where, optional):
    if not isinstance(value, list | tuple) or not value:
        what = "a non-empty list of numbers" if item_type is float else "a non-empty list"
        raise ValueError(
            f"{where}: must be {what}{' or null' if optional else ''}, got {show(value)}"
        )
    item_meta = {k: v for k, v in meta.items() if k in ("ge", "gt", "le", "choices")}
    return tuple(check_value(v, item_type, item_meta, f"{where}[{i}]") for i, v in enumerate(value))


def _selection(value, item_types: tuple, where: str):
    """A regular expression (non-empty str) or a non-empty list of ``item_types`` values."""
    words = " or ".join({str: "strings", int: "integers"}[t] for t in item_types)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list | tuple) and value:
        bad = [v for v in value if isinstance(v, bool) or not isinstance(v, item_types)]
        if not bad:
            return list(value)
    raise ValueError(
        f"{where}: must be a regular expression or a non-empty list of {words}, got {show(value)}"
    )


def expectation(base, meta: Mapping, optional: bool) -> str:
    """``must be ...`` for a field, from its type and constraints."""
    null = " or null" if optional else ""
    if "choices" in meta:
        return f"must be one of {', '.join(show(c) for c in meta['choices'])}{null}"
    if any(k in meta for k in ("ge", "gt", "le")):
        return bound_words(meta, optional, _TYPE_WORDS.get(base, "a value"))
    return f"must be {_TYPE_WORDS.get(base, 'a value')}{null}"


def bound_words(meta: Mapping, optional: bool, noun: str = "") -> str:
    """``must be > 0 or null``, ``must be an integer >= 2``, ``must be >= 0 and <= 0.9``."""
    signs = {"ge": ">=", "gt": ">", "le": "<="}
    parts = " and ".join(f"{signs[k]} {show(meta[k])}" for k in signs if k in meta)
    return f"must be {noun + ' ' if noun else ''}{parts}{' or null' if optional else ''}"


def show(value) -> str:
    """A value as the config would spell it: null, true, 'text', 0.5."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)

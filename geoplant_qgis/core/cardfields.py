"""A card's fields checked one at a time, and a card's text shown bounded in messages.

The checks raise :class:`ModelCardError` naming the faulty field ("inputs[0].size") and
pointing to ``docs/model-contract.md``; :func:`shorten`, :func:`listed` and :func:`shown`
bound what a message or a log line echoes of a card (names, values, lists).
"""

from __future__ import annotations

import math
import reprlib
from typing import NoReturn, TypeGuard

from .errors import ModelCardError

CONTRACT_DOC = "docs/model-contract.md"
#: characters of a card's text (a name, a value) echoed into a message or a log line
SHOWN_CHARS = 200
#: items of a list echoed into a message ("a, b, c, d, e and 37 more")
SHOWN_ITEMS = 5

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_CHARS
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = SHOWN_ITEMS
_REPR.maxlevel = 3


def shorten(text, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters ("..." and the number left out appended): what
    a message or a log line shows of a card's name or text."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def listed(items, limit: int = SHOWN_ITEMS, chars: int = SHOWN_CHARS) -> str:
    """The first ``limit`` items, each :func:`shorten`-ed, comma separated, and "and N more"."""
    items = list(items)
    text = ", ".join(shorten(x, chars) for x in items[:limit])
    return text + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


def shown(value) -> str:
    """repr of a card value for a message, bounded in length and depth."""
    return shorten(_REPR.repr(value))


def fail(path: str, message: str) -> NoReturn:
    """Raise the :class:`ModelCardError` naming the field at ``path`` and what is wrong."""
    raise ModelCardError(f"Invalid model card: '{shorten(path)}' {message} (see {CONTRACT_DOC}).")


def is_number(value) -> TypeGuard[float]:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value) -> TypeGuard[int]:
    """An int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def text_field(d: dict, key: str, path: str, required: bool = True, default: str = "") -> str:
    """``d[key]`` as text: present and not blank when ``required``, else ``default`` if absent."""
    if key not in d or d[key] is None:
        if required:
            fail(f"{path}{key}", "is missing")
        return default
    value = d[key]
    if not isinstance(value, str):
        fail(f"{path}{key}", f"must be text, not {type(value).__name__} {shown(value)}")
    if required and not value.strip():
        fail(f"{path}{key}", "must not be empty")
    return value


def names_field(d: dict, key: str, path: str) -> tuple[str, ...]:
    """``d[key]`` as a non-empty list of distinct, non-blank names."""
    value = d.get(key)
    if value is None:
        fail(f"{path}{key}", "is missing")
    if not isinstance(value, list) or not value:
        fail(f"{path}{key}", "must be a non-empty list of names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            fail(f"{path}{key}[{i}]", f"must be a non-empty name, not {shown(name)}")
    if len(set(value)) != len(value):
        counts: dict[str, int] = {}
        for n in value:
            counts[n] = counts.get(n, 0) + 1
        duplicates = sorted(n for n, c in counts.items() if c > 1)
        fail(f"{path}{key}", f"lists {listed(duplicates)} more than once")
    return tuple(value)

"""A cube input's element names: ``dimensions`` + ``name_template``, and what is missing.

A cube card input may name its axes (C order, one list of values per axis, lengths equal
to ``shape``) and a Python ``str.format`` template naming one element from the values of
its axes: ``{variable}_{year}-{month:02d}`` gives ``pr_2000-01`` .. ``tasmin_2018-12``.
:func:`expand` lists every element's name in C order (what the engine looks for);
:func:`describe_missing` says what is missing grouped in runs of consecutive elements
("12 of 912 missing: tas_2018-01 to tas_2018-12").
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .cardfields import is_number

#: runs of missing elements shown in a message (the rest counted)
SHOWN_RUNS = 8


@dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple[Any, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "values": list(self.values)}


def parse_dimensions(
    value: Any, path: str, fail: Callable[[str, str], NoReturn], shape: tuple[int, ...] | None
) -> tuple[Dimension, ...]:
    """Validate ``dimensions``: [{"name": identifier, "values": [text or numbers]}], one per
    axis of ``shape`` (when given) with as many values as that axis is long."""
    if not isinstance(value, list) or not value:
        fail(path, 'must be a non-empty list of {"name": ..., "values": [...]}, one per cube axis')
    if shape is not None and len(value) != len(shape):
        fail(path, f"has {len(value)} dimensions but shape {list(shape)} has {len(shape)} axes")
    dims: list[Dimension] = []
    for i, raw in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(raw, dict):
            fail(where, 'must be an object {"name": ..., "values": [...]}')
        unknown = sorted(set(raw) - {"name", "values"})
        if unknown:
            fail(f"{where}.{unknown[0]}", "is not a field of a dimension (it takes name and values)")
        name = raw.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            fail(
                f"{where}.name",
                "must be a name made of letters, digits and '_' (used in name_template), "
                f"not {str(name)[:60]!r}",
            )
        if any(d.name == name for d in dims):
            fail(f"{where}.name", f"'{name}' is already the name of another dimension")
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            fail(f"{where}.values", "must be a non-empty list of text or numbers")
        for j, v in enumerate(values):
            if not (isinstance(v, str) or is_number(v)):
                fail(f"{where}.values[{j}]", f"must be text or a number, not {str(v)[:60]!r}")
        if len(set(map(repr, values))) != len(values):
            fail(f"{where}.values", "lists a value more than once")
        if shape is not None and len(values) != shape[i]:
            fail(
                f"{where}.values",
                f"has {len(values)} values but axis {i} of shape {list(shape)} is {shape[i]}",
            )
        dims.append(Dimension(name, tuple(values)))
    return tuple(dims)


def check_template(template: Any, path: str, fail: Callable[[str, str], NoReturn], dims: Sequence[Dimension]):
    """``name_template`` must be text naming only the dimensions, each at least once."""
    if not isinstance(template, str) or not template.strip():
        fail(
            path, "must be text such as '{variable}_{year}-{month:02d}' (str.format with the dimension names)"
        )
    names = {d.name for d in dims}
    used: set[str] = set()
    try:
        for _, field, _, _ in string.Formatter().parse(template):
            if field is None:
                continue
            base = field.split(".")[0].split("[")[0]
            if base != field or not base:
                fail(path, f"may only use the dimension names as fields, not '{{{field}}}'")
            if base not in names:
                fail(
                    path,
                    f"uses '{{{base}}}', which is not a dimension (dimensions: {', '.join(sorted(names))})",
                )
            used.add(base)
    except ValueError as error:
        fail(path, f"is not a valid str.format template: {error}")
    unused = [d.name for d in dims if d.name not in used and len(d.values) > 1]
    if unused:
        fail(path, f"does not use the dimension(s) {', '.join(unused)}: elements would share names")


def expand(dims: Sequence[Dimension], template: str) -> list[str]:
    """Every element's name, in C order of ``dims``. ValueError/KeyError from format as is."""
    keys = [d.name for d in dims]
    fmt = template.format
    return [
        fmt(**dict(zip(keys, combo, strict=True))) for combo in itertools.product(*(d.values for d in dims))
    ]


def expand_checked(
    dims: Sequence[Dimension], template: str, path: str, fail: Callable[[str, str], NoReturn]
) -> tuple[str, ...]:
    """:func:`expand`, a format error or two elements with one name (compared as the engine
    compares names: case, '_', '-' and spaces ignored) reported in words."""
    from .sources import normalise_name

    try:
        names = expand(dims, template)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        fail(path, f"cannot name every element: {error} (a format such as ':02d' needs numbers)")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if not n.strip():
            fail(path, f"gives an empty name for element {i}")
        key = normalise_name(n)
        if key in seen:
            fail(
                path,
                f"gives two elements the same name ('{names[seen[key]]}' and '{n}'; case, '_', '-' and "
                "spaces are ignored when names are matched)",
            )
        seen[key] = i
    return tuple(names)


def runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted indices -> [(first, last)] of consecutive runs."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def describe_missing(input_name: str, names: Sequence[str], missing: set[str]) -> str:
    """e.g. ``bioclim: 12 of 912 missing: tas_2018-01 to tas_2018-12``."""
    idx = [i for i, n in enumerate(names) if n in missing]
    parts = []
    groups = runs(idx)
    for first, last in groups[:SHOWN_RUNS]:
        if first == last:
            parts.append(names[first])
        else:
            parts.append(f"{names[first]} to {names[last]} ({last - first + 1})")
    more = len(groups) - SHOWN_RUNS
    tail = f" and {more} more runs" if more > 0 else ""
    return f"{input_name}: {len(idx):,} of {len(names):,} missing: {', '.join(parts)}{tail}"

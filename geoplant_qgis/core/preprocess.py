"""An input's ``preprocess`` steps: from raster values to the tensor a model was trained on.

A card input may state, in order, the steps the engine applies elementwise to the raw
raster values (``docs/model-contract.md``)::

    fill_nan  value            NaN (nodata, outside the raster) -> value; first step only
    clip      min and/or max   np.clip(x, min, max)
    scale     factor           x * factor
    offset    value            x + value
    power     exponent         x ** exponent (NaN for x < 0 and a fractional exponent)
    log1p                      log(1 + x)
    normalise mean, std        (x - mean) / std; a number, or one per channel

Today's ``fill``/``scale``/``mean``/``std`` fields are the steps
``[fill_nan, scale, normalise]`` (:func:`legacy_steps`).

The engine splits the list in three (:func:`split`): the leading ``fill_nan`` (the
engine's nodata policy, as ``fill`` has always been), the *head* (every step up to the
last non-affine one: clip, power, log1p) applied in numpy to the sampled values, and the
*tail* (the trailing scale, offset and normalise steps) composed into one ``x * mul + add``
that the engine prepends to the model's graph or applies on a patch's fine grid, as it
always did for the normalisation. A value the head makes NaN or infinite makes its cell
nodata (never NaN into the model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from .cardfields import is_number as _is_number

OPS = ("fill_nan", "clip", "scale", "offset", "power", "log1p", "normalise")
#: steps that are x * a + b, composable into the one affine map the graph applies
AFFINE_OPS = frozenset({"scale", "offset", "normalise"})
#: the fields each step takes, and which are required
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fill_nan": (("value",), ("value",)),
    "clip": (("min", "max"), ()),
    "scale": (("factor",), ("factor",)),
    "offset": (("value",), ("value",)),
    "power": (("exponent",), ("exponent",)),
    "log1p": ((), ()),
    "normalise": (("mean", "std"), ()),
}
_SPELLINGS = {"normalize": "normalise", "fillnan": "fill_nan", "fill": "fill_nan", "multiply": "scale"}


def _g(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class Step:
    """One preprocessing step; only the fields of its ``op`` are set."""

    op: str
    value: float | None = None  # fill_nan, offset
    min: float | None = None  # clip
    max: float | None = None  # clip
    factor: float | None = None  # scale
    exponent: float | None = None  # power
    mean: tuple[float, ...] = ()  # normalise (empty: 0)
    std: tuple[float, ...] = ()  # normalise (empty: 1)

    @property
    def per_channel(self) -> bool:
        return len(self.mean) > 1 or len(self.std) > 1

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"op": self.op}
        for key in FIELDS[self.op][0]:
            value = getattr(self, key)
            if key in ("mean", "std"):
                if value:
                    d[key] = value[0] if len(value) == 1 else list(value)
            elif value is not None:
                d[key] = value
        return d

    def text(self) -> str:
        """The step in words, e.g. ``clip to 0 .. 10000``."""
        if self.op == "fill_nan":
            return f"fill_nan: nodata and NaN -> {_g(self.value or 0.0)}"
        if self.op == "clip":
            lo = "-inf" if self.min is None else _g(self.min)
            hi = "+inf" if self.max is None else _g(self.max)
            return f"clip to {lo} .. {hi}"
        if self.op == "scale":
            return f"scale {_g(self.factor or 0.0)}: x * {_g(self.factor or 0.0)}"
        if self.op == "offset":
            return f"offset: x + {_g(self.value or 0.0)}"
        if self.op == "power":
            return f"power: x ** {_g(self.exponent or 0.0)}"
        if self.op == "log1p":
            return "log1p: log(1 + x)"
        mean = ", ".join(map(_g, self.mean)) or "0"
        std = ", ".join(map(_g, self.std)) or "1"
        return f"normalise: (x - mean) / std, mean [{mean}], std [{std}]"


def _numbers(value: Any, fail: Callable[[str, str], NoReturn], where: str) -> tuple[float, ...]:
    if _is_number(value):
        return (float(value),)
    if isinstance(value, list) and value and all(_is_number(v) for v in value):
        return tuple(float(v) for v in value)
    fail(where, "must be a number or a non-empty list of numbers")


def parse_steps(
    value: Any,
    path: str,
    fail: Callable[[str, str], NoReturn],
    channels: Sequence[int],
    channel_word: str,
) -> tuple[Step, ...]:
    """Validate a card's ``preprocess`` list. ``fail(path, message)`` raises; ``channels``:
    the allowed numbers of per-channel values of ``normalise`` (1 always allowed)."""
    if not isinstance(value, list):
        fail(path, 'must be a list of steps such as {"op": "scale", "factor": 0.0001}')
    steps: list[Step] = []
    allowed = sorted({1, *channels})
    for i, raw in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(raw, dict):
            fail(where, 'must be an object with an "op", e.g. {"op": "log1p"}')
        op = raw.get("op")
        if op not in FIELDS:
            hint = f" (did you mean '{_SPELLINGS[op]}'?)" if isinstance(op, str) and op in _SPELLINGS else ""
            fail(f"{where}.op", f"must be one of {', '.join(OPS)}, not {str(op)[:60]!r}{hint}")
        known, required = FIELDS[op]
        unknown = sorted(set(raw) - {"op", *known})
        if unknown:
            takes = ", ".join(known) or "no other field"
            fail(f"{where}.{unknown[0]}", f"is not a field of the step '{op}' (it takes {takes})")
        for key in required:
            if key not in raw:
                fail(f"{where}.{key}", f"is missing (the step '{op}' needs it)")
        fields: dict[str, Any] = {}
        for key in known:
            if key not in raw or (raw[key] is None and op == "clip"):
                continue
            if key in ("mean", "std"):
                numbers = _numbers(raw[key], fail, f"{where}.{key}")
                if len(numbers) not in allowed:
                    fail(
                        f"{where}.{key}",
                        f"has {len(numbers)} values; give a single value or one per {channel_word} "
                        f"({' or '.join(str(a) for a in allowed if a != 1)})",
                    )
                if key == "std" and any(v <= 0 for v in numbers):
                    fail(f"{where}.std", "values must be positive")
                fields[key] = numbers
                continue
            number = raw[key]
            if not _is_number(number):
                fail(f"{where}.{key}", f"must be a finite number, not {str(number)[:60]!r}")
            fields[key] = float(number)
        if op == "clip":
            if "min" not in fields and "max" not in fields:
                fail(where, "a clip step needs min, max or both")
            if "min" in fields and "max" in fields and fields["min"] > fields["max"]:
                fail(where, f"clip min {_g(fields['min'])} is above its max {_g(fields['max'])}")
        if op == "scale" and fields["factor"] == 0:
            fail(f"{where}.factor", "must not be 0 (every value would become 0)")
        if op == "power" and fields["exponent"] == 0:
            fail(f"{where}.exponent", "must not be 0 (every value would become 1)")
        if op == "normalise" and not fields:
            fail(where, "a normalise step needs mean, std or both")
        if op == "fill_nan" and i != 0:
            fail(
                where,
                "fill_nan must be the first step: it replaces the rasters' nodata before anything "
                "else (a value a later step makes NaN makes the cell nodata)",
            )
        steps.append(Step(op, **fields))
    fill, head, _ = split(tuple(steps))
    per_channel = [s for s in head if s.per_channel]
    if per_channel:
        i = list(steps).index(per_channel[0])
        fail(
            f"{path}[{i}]",
            "a normalise with one value per channel must come after the last clip, power and log1p "
            "step (those are applied to every channel alike)",
        )
    return tuple(steps)


def legacy_steps(
    fill: float | None, scale: float, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[Step, ...]:
    """Today's fields as steps: ``[fill_nan, scale, normalise]``, each when given."""
    steps: list[Step] = []
    if fill is not None:
        steps.append(Step("fill_nan", value=fill))
    if scale != 1.0:
        steps.append(Step("scale", factor=scale))
    if mean or std:
        steps.append(Step("normalise", mean=mean, std=std))
    return tuple(steps)


def split(steps: tuple[Step, ...]) -> tuple[float | None, tuple[Step, ...], tuple[Step, ...]]:
    """(fill value or None, head steps applied in numpy, tail of affine steps)."""
    fill = None
    if steps and steps[0].op == "fill_nan":
        fill, steps = steps[0].value, steps[1:]
    last = max((i for i, s in enumerate(steps) if s.op not in AFFINE_OPS), default=-1)
    return fill, steps[: last + 1], steps[last + 1 :]


def apply_head(head: Sequence[Step], x: np.ndarray) -> np.ndarray:
    """The head steps on float32 ``x`` (any shape; every value alike: per-channel
    normalise is never in a head), in place when ``x`` is a float32 array. NaN stays NaN;
    values made NaN or infinite become NaN (nodata)."""
    out = np.asarray(x, dtype=np.float32)
    if not head:
        return out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for step in head:
            if step.op == "clip":
                np.clip(
                    out,
                    -np.inf if step.min is None else np.float32(step.min),
                    np.inf if step.max is None else np.float32(step.max),
                    out=out,
                )
            elif step.op == "scale":
                out *= np.float32(step.factor)
            elif step.op == "offset":
                out += np.float32(step.value)
            elif step.op == "power":
                np.power(out, np.float32(step.exponent), out=out)
            elif step.op == "log1p":
                np.log1p(out, out=out)
            elif step.op == "normalise":
                if step.mean:
                    out -= np.float32(step.mean[0])
                if step.std:
                    out /= np.float32(step.std[0])
        bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = np.nan
    return out


def compose_tail(
    tail: Sequence[Step], stat: Callable[[tuple[float, ...], float], np.ndarray | float]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The affine tail as ``x * mul + add`` (float32, None when not needed); ``stat(values,
    default)`` shapes a normalise's mean/std to broadcast against the model's tensor."""
    if not tail:
        return None, None
    mul: Any = np.float64(1.0)
    add: Any = np.float64(0.0)
    for step in tail:
        if step.op == "scale":
            mul, add = mul * float(step.factor or 0.0), add * float(step.factor or 0.0)
        elif step.op == "offset":
            add = add + float(step.value or 0.0)
        else:  # normalise
            mean = np.asarray(stat(step.mean, 0.0), np.float64)
            std = np.asarray(stat(step.std, 1.0), np.float64)
            mul, add = mul / std, (add - mean) / std
    mul_out = None if np.all(np.asarray(mul) == 1.0) else np.asarray(mul, np.float32)
    add_out = None if np.all(np.asarray(add) == 0.0) else np.asarray(add, np.float32)
    if mul_out is not None and add_out is not None:  # the same shape for the graph
        shape = np.broadcast_shapes(mul_out.shape, add_out.shape)
        mul_out = np.ascontiguousarray(np.broadcast_to(mul_out, shape))
        add_out = np.ascontiguousarray(np.broadcast_to(add_out, shape))
    return mul_out, add_out

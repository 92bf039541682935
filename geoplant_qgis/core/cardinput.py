"""One input of a model card: its fields validated, and raster values made the model's tensor.

:class:`InputSpec` is one ONNX input of a ``geoplant-onnx/1`` card (``kind`` point, patch
or cube) and where its values come from; it turns raw sampled values into the tensor the
model receives (fill, the ``preprocess`` steps or scale/mean/std, valid cells).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cardfields import fail, is_int, is_number, names_field, shown, text_field
from .cubenames import Dimension, check_template, expand_checked, parse_dimensions
from .preprocess import Step, apply_head, compose_tail, legacy_steps, parse_steps, split

KINDS = ("point", "patch", "cube")


@dataclass(frozen=True)
class InputSpec:
    """One ONNX input and where its values come from."""

    name: str
    kind: str  # "point" | "patch" | "cube"
    variables: tuple[str, ...] = ()
    bands: tuple[str, ...] = ()
    size: int | None = None
    pixel_size_m: float | None = None
    shape: tuple[int, ...] | None = None
    scale: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    fill: float | None = None
    #: the ``preprocess`` steps when the card gives them (then scale/mean/std are unset and
    #: ``fill`` is the value of a leading fill_nan step); empty: the fields above say it all
    preprocess: tuple[Step, ...] = ()
    #: a cube's axes and element name template (``variables`` is then their expansion)
    dimensions: tuple[Dimension, ...] = ()
    name_template: str = ""

    def __post_init__(self):
        if self.preprocess:
            first = self.preprocess[0]
            object.__setattr__(self, "fill", first.value if first.op == "fill_nan" else None)
        if self.dimensions and self.name_template and not self.variables:
            from .cubenames import expand

            object.__setattr__(self, "variables", tuple(expand(self.dimensions, self.name_template)))

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every preprocessing step in order: ``preprocess``, or today's fields as
        ``[fill_nan, scale, normalise]``."""
        return self.preprocess or legacy_steps(self.fill, self.scale, self.mean, self.std)

    @property
    def head(self) -> tuple[Step, ...]:
        """The steps after fill_nan up to the last non-affine one (clip, power, log1p),
        applied in numpy to the sampled values (empty for a card without ``preprocess``)."""
        return split(self.preprocess)[1] if self.preprocess else ()

    def apply_head(self, x: np.ndarray) -> np.ndarray:
        """:attr:`head` on raw values (in place on float32); values it makes NaN or
        infinite become NaN."""
        return apply_head(self.head, x)

    @property
    def source_names(self) -> tuple[str, ...]:
        """The raster variables feeding this input: ``variables`` (point/cube) or ``bands`` (patch)."""
        return self.bands if self.kind == "patch" else self.variables

    def tensor_shape(self, n: int) -> tuple[int, ...]:
        """The shape of the tensor the model receives for ``n`` cells."""
        if self.kind == "point":
            return (n, len(self.variables))
        if self.kind == "patch":
            assert self.size is not None  # a patch input has a size (from_dict checks it)
            return (n, len(self.bands), self.size, self.size)
        assert self.shape is not None  # a cube input has a shape (from_dict checks it)
        return (n, *self.shape)

    def _stat(self, values: tuple[float, ...], default: float, ndim: int) -> np.ndarray | float:
        """``mean``/``std`` shaped to broadcast against a tensor of ``ndim`` dimensions."""
        if not values:
            return default
        stat = np.asarray(values, dtype=np.float32)
        if stat.size == 1:
            return stat.reshape(())
        if self.kind == "cube" and self.shape is not None and stat.size == len(self.variables) and ndim > 2:
            return stat.reshape(self.shape)  # one per variable, over [N, *shape]
        # one per channel (point variable, patch band, cube first axis, or flat cube row)
        return stat.reshape((stat.size,) + (1,) * max(ndim - 2, 0))

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """``(x * scale - mean) / std`` on the channel axis (axis 1), as float32.

        ``x`` is ``[N, V]`` (point, or a cube still flat), ``[N, C, P, P]`` (patch) or
        ``[N, *shape]`` (cube). NaN stays NaN.
        """
        x = np.asarray(x, dtype=np.float32)
        if self.preprocess:
            mul, add = compose_tail(split(self.preprocess)[2], lambda v, d: self._stat(v, d, x.ndim))
            out = x * mul if mul is not None else x.copy()
            if add is not None:
                out += add
            return out
        out = x * np.float32(self.scale) if self.scale != 1.0 else x.copy()
        if self.mean:
            out -= self._stat(self.mean, 0.0, x.ndim)
        if self.std:
            out /= self._stat(self.std, 1.0, x.ndim)
        return out

    def affine(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """:meth:`normalise` as ``x * mul + add`` (float32; None when not needed), shaped to
        broadcast against the model's tensor: what the engine prepends to the graph or
        applies to a patch input's fine grid."""
        ndim = len(self.tensor_shape(1))
        if self.preprocess:
            return compose_tail(split(self.preprocess)[2], lambda v, d: self._stat(v, d, ndim))
        std = self._stat(self.std, 1.0, ndim) if self.std else None
        mean = self._stat(self.mean, 0.0, ndim) if self.mean else None
        divisor = std if std is not None else np.float32(1.0)
        mul = add = None
        if self.scale != 1.0 or std is not None:
            mul = np.asarray(np.float32(self.scale) / divisor, np.float32)
        if mean is not None:
            add = np.asarray(-mean / divisor, np.float32)
        return mul, add

    def prepare(self, raw: np.ndarray, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Raw sampled values -> (model tensor float32, valid cells bool [N]).

        ``raw`` is ``[N, V]`` for point/cube inputs (cube variables in C order) or
        ``[N, C, P, P]`` for patches, NaN where a source has no data. NaN is replaced by
        ``fill`` (a raw value, before normalisation) when the card gives one; otherwise
        cells with any NaN are invalid (their rows hold NaN). ``normalise=False``: the
        tensor is left raw (the engine's graph normalises it).
        """
        raw = np.asarray(raw, dtype=np.float32)
        # the model's shape first ([N, V] cube rows -> [N, *shape]), so that a mean/std given
        # per first axis broadcasts like one given per variable
        raw = raw.reshape(self.tensor_shape(len(raw)))
        head = self.head
        if self.fill is not None:
            missing = np.isnan(raw)
            if missing.any():
                raw = np.where(missing, np.float32(self.fill), raw)
        if head:  # clip, power, log1p...: a value made NaN or infinite becomes NaN
            raw = apply_head(head, raw.copy())
        if self.fill is not None and not head:
            valid = np.ones(len(raw), dtype=bool)
        else:
            flat = raw.reshape(len(raw), -1)
            # a NaN anywhere makes the row's sum NaN: one vectorised pass, no boolean copy
            with np.errstate(invalid="ignore", over="ignore"):
                bad = np.isnan(flat.sum(axis=1))
            if bad.any():  # inf - inf also gives NaN: confirm with isnan on those rows only
                bad[bad] = np.isnan(flat[bad]).any(axis=1)
            valid = ~bad
        return (self.normalise(raw) if normalise else raw), valid

    @classmethod
    def from_dict(cls, d, path: str = "inputs[0]") -> InputSpec:
        if not isinstance(d, dict):
            fail(path, "must be an object")
        p = f"{path}."
        name = text_field(d, "name", p)
        kind = d.get("kind")
        if kind not in KINDS:
            fail(f"{p}kind", f"must be one of {', '.join(KINDS)}, not {shown(kind)}")
        variables: tuple[str, ...] = ()
        bands: tuple[str, ...] = ()
        size = pixel_size = shape = None
        dimensions: tuple[Dimension, ...] = ()
        name_template = ""
        if kind == "point":
            variables = names_field(d, "variables", p)
            channels = len(variables)
        elif kind == "patch":
            bands = names_field(d, "bands", p)
            size = d.get("size")
            if not is_int(size) or size < 1:
                fail(f"{p}size", f"must be a positive whole number of pixels, not {shown(size)}")
            pixel_size = d.get("pixel_size_m")
            if not is_number(pixel_size) or pixel_size <= 0:
                fail(f"{p}pixel_size_m", f"must be a positive number of metres, not {shown(pixel_size)}")
            pixel_size = float(pixel_size)
            channels = len(bands)
        else:
            shape, variables, dimensions, name_template = _cube_fields(d, p)
            channels = len(variables)
        scale = d.get("scale", 1.0)
        if scale is None:
            scale = 1.0
        if not is_number(scale) or scale == 0:
            fail(f"{p}scale", f"must be a non-zero number, not {shown(scale)}")
        allowed = {1, channels}
        if kind == "cube" and shape is not None:
            allowed.add(shape[0])
        stats: dict[str, tuple[float, ...]] = {}
        for key in ("mean", "std"):
            value = d.get(key)
            if value is None:
                stats[key] = ()
                continue
            if is_number(value):
                value = [value]
            if not isinstance(value, list) or not all(is_number(v) for v in value):
                fail(f"{p}{key}", f"must be a number or a list of numbers, not {shown(value)}")
            if len(value) not in allowed:
                fail(
                    f"{p}{key}",
                    f"has {len(value)} values; give one per "
                    f"{'band' if kind == 'patch' else 'variable'} ({channels}) or a single value",
                )
            if key == "std" and any(v <= 0 for v in value):
                fail(f"{p}{key}", "values must be positive")
            stats[key] = tuple(float(v) for v in value)
        fill = d.get("fill")
        if fill is not None and not is_number(fill):
            fail(f"{p}fill", f"must be a number or null, not {shown(fill)}")
        unknown = sorted(
            set(d)
            - {"name", "kind", "variables", "bands", "size", "pixel_size_m", "shape"}
            - {"scale", "mean", "std", "fill", "preprocess"}
            - ({"dimensions", "name_template"} if kind == "cube" else set())
        )
        if unknown:
            fail(p + unknown[0], "is not a field of a model input")
        preprocess: tuple[Step, ...] = ()
        if d.get("preprocess") is not None:
            old = [k for k in ("scale", "mean", "std", "fill") if d.get(k) is not None]
            if old:
                fail(
                    f"{p}{old[0]}",
                    "cannot be given with preprocess: preprocess states every step (today's "
                    "fill, scale, mean and std are the steps fill_nan, scale, normalise)",
                )
            preprocess = parse_steps(
                d["preprocess"],
                f"{p}preprocess",
                fail,
                sorted(allowed),
                "band" if kind == "patch" else "variable",
            )
        return cls(
            name=name,
            kind=kind,
            variables=variables,
            bands=bands,
            size=size,
            pixel_size_m=pixel_size,
            shape=shape,
            scale=float(scale),
            mean=stats["mean"],
            std=stats["std"],
            fill=None if fill is None else float(fill),
            preprocess=preprocess,
            dimensions=dimensions,
            name_template=name_template,
        )

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "kind": self.kind}
        if self.kind == "patch":
            d.update(bands=list(self.bands), size=self.size, pixel_size_m=self.pixel_size_m)
        elif self.kind == "cube":
            d["shape"] = list(self.shape or ())
            if self.dimensions:
                d["dimensions"] = [dim.to_dict() for dim in self.dimensions]
                d["name_template"] = self.name_template
            else:
                d["variables"] = list(self.variables)
        else:
            d["variables"] = list(self.variables)
        if self.preprocess:
            d["preprocess"] = [step.to_dict() for step in self.preprocess]
            return d
        if self.scale != 1.0:
            d["scale"] = self.scale
        if self.mean:
            d["mean"] = list(self.mean)
        if self.std:
            d["std"] = list(self.std)
        if self.fill is not None:
            d["fill"] = self.fill
        return d


def _cube_fields(d: dict, p: str) -> tuple[tuple[int, ...], tuple[str, ...], tuple[Dimension, ...], str]:
    """A cube input's ``shape``, element names (``variables``, or ``dimensions`` and
    ``name_template`` expanded and checked against them), dimensions and template."""
    dimensions: tuple[Dimension, ...] = ()
    name_template = ""
    raw_shape = d.get("shape")
    if raw_shape is None and isinstance(d.get("dimensions"), list):
        raw_shape = [len(x.get("values") or ()) if isinstance(x, dict) else 0 for x in d["dimensions"]]
    if not isinstance(raw_shape, list) or not raw_shape or not all(is_int(s) and s > 0 for s in raw_shape):
        fail(f"{p}shape", f"must be a non-empty list of positive whole numbers, not {shown(raw_shape)}")
    shape = tuple(raw_shape)
    if "dimensions" in d or "name_template" in d:
        if "dimensions" not in d or "name_template" not in d:
            missing = "name_template" if "dimensions" in d else "dimensions"
            fail(
                f"{p}{missing}",
                "is missing: a cube names its elements with dimensions and name_template together",
            )
        dimensions = parse_dimensions(d["dimensions"], f"{p}dimensions", fail, shape)
        check_template(d["name_template"], f"{p}name_template", fail, dimensions)
        name_template = d["name_template"]
        expanded = expand_checked(dimensions, name_template, f"{p}name_template", fail)
        if d.get("variables") is not None:
            listed_names = names_field(d, "variables", p)
            if listed_names != expanded:
                diff = next(
                    (i for i, (a, b) in enumerate(zip(listed_names, expanded, strict=False)) if a != b),
                    min(len(listed_names), len(expanded)),
                )
                got = shown(listed_names[diff]) if diff < len(listed_names) else "nothing"
                fail(
                    f"{p}variables",
                    f"disagrees with dimensions and name_template: element {diff} is {got} "
                    f"in variables but {shown(expanded[diff]) if diff < len(expanded) else 'none'} "
                    f"from the template ({len(listed_names)} names listed, {len(expanded)} from "
                    "the template); give one of them, or make them agree",
                )
        variables = expanded
    else:
        variables = names_field(d, "variables", p)
    if len(variables) != math.prod(shape):
        fail(
            f"{p}variables",
            f"must list {math.prod(shape)} names (the product of shape {list(shape)}, "
            f"in C order), not {len(variables)}",
        )
    return shape, variables, dimensions, name_template

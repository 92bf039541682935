"""The ``geoplant-onnx/1`` model card: what a model needs and what it gives.

Every model carries a JSON object in the ONNX ``metadata_props`` entry ``geoplant``.
:func:`read_model_card` reads it with onnxruntime, validates it field by field and checks
it against the graph's inputs and outputs. The contract is written up in
``docs/model-contract.md``.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from dataclasses import dataclass
from typing import NoReturn, TypeGuard

import numpy as np

from .cubenames import Dimension, check_template, expand_checked, parse_dimensions
from .errors import ModelCardError
from .preprocess import Step, apply_head, compose_tail, legacy_steps, parse_steps, split

FORMAT = "geoplant-onnx/1"
METADATA_KEY = "geoplant"
ACTIVATIONS = ("sigmoid", "softmax", "none")
KINDS = ("point", "patch", "cube")
CONTRACT_DOC = "docs/model-contract.md"
#: the largest species id a card may give: top-K rasters are int32 with -1 as nodata
MAX_SPECIES_ID = 2**31 - 1
#: the largest card read, bytes of JSON (UTF-8): a card with GeoPlant's 11,255 species
#: names is about 0.6 MB (0.9 MB indented); larger is not a card but a mistake or an attack
MAX_CARD_BYTES = 16 * 1024 * 1024
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


def _fail(path: str, message: str) -> NoReturn:
    raise ModelCardError(f"Invalid model card: '{shorten(path)}' {message} (see {CONTRACT_DOC}).")


def _is_number(value) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(d: dict, key: str, path: str, required: bool = True, default: str = "") -> str:
    if key not in d or d[key] is None:
        if required:
            _fail(f"{path}{key}", "is missing")
        return default
    value = d[key]
    if not isinstance(value, str):
        _fail(f"{path}{key}", f"must be text, not {type(value).__name__} {shown(value)}")
    if required and not value.strip():
        _fail(f"{path}{key}", "must not be empty")
    return value


def _names(d: dict, key: str, path: str) -> tuple[str, ...]:
    value = d.get(key)
    if value is None:
        _fail(f"{path}{key}", "is missing")
    if not isinstance(value, list) or not value:
        _fail(f"{path}{key}", "must be a non-empty list of names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            _fail(f"{path}{key}[{i}]", f"must be a non-empty name, not {shown(name)}")
    if len(set(value)) != len(value):
        counts: dict[str, int] = {}
        for n in value:
            counts[n] = counts.get(n, 0) + 1
        duplicates = sorted(n for n, c in counts.items() if c > 1)
        _fail(f"{path}{key}", f"lists {listed(duplicates)} more than once")
    return tuple(value)


@dataclass(frozen=True)
class Species:
    id: int
    name: str


@dataclass(frozen=True)
class OutputSpec:
    name: str
    activation: str  # "sigmoid" | "softmax" | "none"


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
            _fail(path, "must be an object")
        p = f"{path}."
        name = _text(d, "name", p)
        kind = d.get("kind")
        if kind not in KINDS:
            _fail(f"{p}kind", f"must be one of {', '.join(KINDS)}, not {shown(kind)}")
        variables: tuple[str, ...] = ()
        bands: tuple[str, ...] = ()
        size = pixel_size = shape = None
        dimensions: tuple[Dimension, ...] = ()
        name_template = ""
        if kind == "point":
            variables = _names(d, "variables", p)
            channels = len(variables)
        elif kind == "patch":
            bands = _names(d, "bands", p)
            size = d.get("size")
            if not _is_int(size) or size < 1:
                _fail(f"{p}size", f"must be a positive whole number of pixels, not {shown(size)}")
            pixel_size = d.get("pixel_size_m")
            if not _is_number(pixel_size) or pixel_size <= 0:
                _fail(f"{p}pixel_size_m", f"must be a positive number of metres, not {shown(pixel_size)}")
            pixel_size = float(pixel_size)
            channels = len(bands)
        else:
            raw_shape = d.get("shape")
            if raw_shape is None and isinstance(d.get("dimensions"), list):
                raw_shape = [
                    len(x.get("values") or ()) if isinstance(x, dict) else 0 for x in d["dimensions"]
                ]
            if (
                not isinstance(raw_shape, list)
                or not raw_shape
                or not all(_is_int(s) and s > 0 for s in raw_shape)
            ):
                _fail(
                    f"{p}shape", f"must be a non-empty list of positive whole numbers, not {shown(raw_shape)}"
                )
            shape = tuple(raw_shape)
            if "dimensions" in d or "name_template" in d:
                if "dimensions" not in d or "name_template" not in d:
                    missing = "name_template" if "dimensions" in d else "dimensions"
                    _fail(
                        f"{p}{missing}",
                        "is missing: a cube names its elements with dimensions and name_template together",
                    )
                dimensions = parse_dimensions(d["dimensions"], f"{p}dimensions", _fail, shape)
                check_template(d["name_template"], f"{p}name_template", _fail, dimensions)
                name_template = d["name_template"]
                expanded = expand_checked(dimensions, name_template, f"{p}name_template", _fail)
                if d.get("variables") is not None:
                    listed_names = _names(d, "variables", p)
                    if listed_names != expanded:
                        diff = next(
                            (
                                i
                                for i, (a, b) in enumerate(zip(listed_names, expanded, strict=False))
                                if a != b
                            ),
                            min(len(listed_names), len(expanded)),
                        )
                        got = shown(listed_names[diff]) if diff < len(listed_names) else "nothing"
                        _fail(
                            f"{p}variables",
                            f"disagrees with dimensions and name_template: element {diff} is {got} "
                            f"in variables but {shown(expanded[diff]) if diff < len(expanded) else 'none'} "
                            f"from the template ({len(listed_names)} names listed, {len(expanded)} from "
                            "the template); give one of them, or make them agree",
                        )
                variables = expanded
            else:
                variables = _names(d, "variables", p)
            if len(variables) != math.prod(shape):
                _fail(
                    f"{p}variables",
                    f"must list {math.prod(shape)} names (the product of shape {list(shape)}, "
                    f"in C order), not {len(variables)}",
                )
            channels = len(variables)
        scale = d.get("scale", 1.0)
        if scale is None:
            scale = 1.0
        if not _is_number(scale) or scale == 0:
            _fail(f"{p}scale", f"must be a non-zero number, not {shown(scale)}")
        allowed = {1, channels}
        if kind == "cube" and shape is not None:
            allowed.add(shape[0])
        stats: dict[str, tuple[float, ...]] = {}
        for key in ("mean", "std"):
            value = d.get(key)
            if value is None:
                stats[key] = ()
                continue
            if _is_number(value):
                value = [value]
            if not isinstance(value, list) or not all(_is_number(v) for v in value):
                _fail(f"{p}{key}", f"must be a number or a list of numbers, not {shown(value)}")
            if len(value) not in allowed:
                _fail(
                    f"{p}{key}",
                    f"has {len(value)} values; give one per "
                    f"{'band' if kind == 'patch' else 'variable'} ({channels}) or a single value",
                )
            if key == "std" and any(v <= 0 for v in value):
                _fail(f"{p}{key}", "values must be positive")
            stats[key] = tuple(float(v) for v in value)
        fill = d.get("fill")
        if fill is not None and not _is_number(fill):
            _fail(f"{p}fill", f"must be a number or null, not {shown(fill)}")
        unknown = sorted(
            set(d)
            - {"name", "kind", "variables", "bands", "size", "pixel_size_m", "shape"}
            - {"scale", "mean", "std", "fill", "preprocess"}
            - ({"dimensions", "name_template"} if kind == "cube" else set())
        )
        if unknown:
            _fail(p + unknown[0], "is not a field of a model input")
        preprocess: tuple[Step, ...] = ()
        if d.get("preprocess") is not None:
            old = [k for k in ("scale", "mean", "std", "fill") if d.get(k) is not None]
            if old:
                _fail(
                    f"{p}{old[0]}",
                    "cannot be given with preprocess: preprocess states every step (today's "
                    "fill, scale, mean and std are the steps fill_nan, scale, normalise)",
                )
            preprocess = parse_steps(
                d["preprocess"],
                f"{p}preprocess",
                _fail,
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


@dataclass(frozen=True)
class GridSpec:
    crs: str
    cell_size_m: float


@dataclass(frozen=True)
class ModelCard:
    species: tuple[Species, ...]
    output: OutputSpec
    inputs: tuple[InputSpec, ...]
    grid: GridSpec | None = None
    format: str = FORMAT
    name: str = ""
    description: str = ""
    license: str = ""
    citation: str = ""

    @classmethod
    def from_dict(cls, d) -> ModelCard:
        """Validate a card given as a dict; :class:`ModelCardError` names the faulty field."""
        if not isinstance(d, dict):
            raise ModelCardError(
                f"Invalid model card: it must be a JSON object, not {type(d).__name__} (see {CONTRACT_DOC})."
            )
        fmt = d.get("format")
        if fmt != FORMAT:
            _fail("format", f"must be {FORMAT!r}, not {shown(fmt)}; this plugin reads only that version")
        texts = {k: _text(d, k, "", required=False) for k in ("name", "description", "license", "citation")}

        species_list = d.get("species")
        if not isinstance(species_list, list) or not species_list:
            _fail("species", 'must be a non-empty list of {"id": int, "name": str}')
        species = []
        for i, s in enumerate(species_list):
            if not isinstance(s, dict):
                _fail(f"species[{i}]", 'must be an object {"id": int, "name": str}')
            sid = s.get("id")
            if isinstance(sid, float) and sid.is_integer():
                sid = int(sid)
            if not _is_int(sid):
                _fail(f"species[{i}].id", f"must be a whole number, not {shown(sid)}")
            if not 0 <= sid <= MAX_SPECIES_ID:
                _fail(
                    f"species[{i}].id",
                    f"must be from 0 to {MAX_SPECIES_ID:,} (top-K rasters hold ids as 32-bit integers, "
                    f"-1 for no data), not {shown(sid)}",
                )
            name = _text(s, "name", f"species[{i}].")
            species.append(Species(sid, name))
        seen: dict[int, int] = {}
        for i, s in enumerate(species):
            if s.id in seen:
                _fail(f"species[{i}].id", f"{s.id} is already used by species[{seen[s.id]}]")
            seen[s.id] = i

        out = d.get("output")
        if not isinstance(out, dict):
            _fail("output", 'must be an object {"name": <output name>, "activation": ...}')
        out_name = _text(out, "name", "output.")
        activation = out.get("activation")
        if activation not in ACTIVATIONS:
            _fail("output.activation", f"must be one of {', '.join(ACTIVATIONS)}, not {shown(activation)}")

        raw_inputs = d.get("inputs")
        if not isinstance(raw_inputs, list) or not raw_inputs:
            _fail("inputs", "must be a non-empty list, one entry per ONNX input")
        inputs = tuple(InputSpec.from_dict(x, f"inputs[{i}]") for i, x in enumerate(raw_inputs))
        names = [x.name for x in inputs]
        for i, n in enumerate(names):
            if names.index(n) != i:
                _fail(f"inputs[{i}].name", f"{shown(n)} is already used by inputs[{names.index(n)}]")

        grid = None
        g = d.get("grid")
        if g is not None:
            if not isinstance(g, dict):
                _fail("grid", 'must be an object {"crs": "EPSG:3035", "cell_size_m": 100}')
            crs = _text(g, "crs", "grid.")
            size = g.get("cell_size_m")
            if not _is_number(size) or size <= 0:
                _fail("grid.cell_size_m", f"must be a positive number of metres, not {shown(size)}")
            grid = GridSpec(crs, float(size))
        return cls(
            species=tuple(species),
            output=OutputSpec(out_name, activation),
            inputs=inputs,
            grid=grid,
            format=fmt,
            **texts,
        )

    @classmethod
    def from_json(cls, text) -> ModelCard:
        """Parse and validate a card's JSON text (str or bytes): at most
        :data:`MAX_CARD_BYTES`, not nested deeper than Python can parse."""
        size = len(text) if isinstance(text, bytes | bytearray) else len(str(text).encode("utf-8", "replace"))
        if size > MAX_CARD_BYTES:
            raise ModelCardError(
                f"The model's '{METADATA_KEY}' card is {size / 1e6:,.1f} MB of JSON; a card may be at most "
                f"{MAX_CARD_BYTES / 1e6:.1f} MB (one with 11,255 species names is about 0.6 MB). This is not "
                f"a card the plugin reads: check how it was written (see {CONTRACT_DOC})."
            )
        try:
            d = json.loads(text)
        except RecursionError:
            raise ModelCardError(
                f"The model's '{METADATA_KEY}' card is JSON nested too deeply to be read (lists or objects "
                f"inside each other thousands of levels deep): it is not a model card (see {CONTRACT_DOC})."
            ) from None
        except (ValueError, TypeError) as error:
            raise ModelCardError(
                f"The model's '{METADATA_KEY}' card is not valid JSON: {shorten(error)} (see {CONTRACT_DOC})."
            ) from None
        try:
            return cls.from_dict(d)
        except RecursionError:  # a repr of a deeply nested value
            raise ModelCardError(
                f"The model's '{METADATA_KEY}' card holds values nested too deeply to be read: it is not "
                f"a model card (see {CONTRACT_DOC})."
            ) from None

    def to_dict(self) -> dict:
        d: dict = {"format": self.format}
        for key in ("name", "description", "license", "citation"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        d["species"] = [{"id": s.id, "name": s.name} for s in self.species]
        d["output"] = {"name": self.output.name, "activation": self.output.activation}
        d["inputs"] = [x.to_dict() for x in self.inputs]
        if self.grid is not None:
            d["grid"] = {"crs": self.grid.crs, "cell_size_m": self.grid.cell_size_m}
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def variable_names(self) -> list[str]:
        """Every source name of every input, each once, in card order."""
        names: list[str] = []
        for x in self.inputs:
            for n in x.source_names:
                if n not in names:
                    names.append(n)
        return names

    def select_species(self, spec) -> list[int]:
        """Species given as ids or names (comma separated text, or a list) -> output column indices.

        Empty or None selects every species. Names compare case-insensitively.
        """
        if spec is None:
            return list(range(len(self.species)))
        items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
        items = [s for s in items if not (isinstance(s, str) and not s)]
        if not items:
            return list(range(len(self.species)))
        by_id = {s.id: i for i, s in enumerate(self.species)}
        by_name = {s.name.strip().casefold(): i for i, s in enumerate(self.species)}
        columns: list[int] = []
        unknown: list[str] = []
        for item in items:
            index = None
            if isinstance(item, int | np.integer) and not isinstance(item, bool):
                index = by_id.get(int(item))
            else:
                text = str(item).strip()
                try:
                    number = float(text)
                except ValueError:
                    number = math.nan
                if math.isfinite(number) and number.is_integer():  # "7" or "7.0", not "7.9"
                    index = by_id.get(int(number))
                if index is None:
                    index = by_name.get(text.casefold())
            if index is None:
                unknown.append(str(item))
            elif index not in columns:
                columns.append(index)
        if unknown:
            raise ModelCardError(
                f"Unknown species: {listed(unknown, 10)}. The model predicts {len(self.species)} species "
                f"(ids {self.species[0].id}..{self.species[-1].id}; see geoplant:modelinfo)."
            )
        return columns


# ---------------------------------------------------------------------------------------
# Reading from ONNX files


def _expected_dims(spec: InputSpec) -> tuple[int, ...]:
    """The dimensions after the batch axis the card implies."""
    return tuple(spec.tensor_shape(1)[1:])


def _dims_text(shape) -> str:
    return "[" + ", ".join("?" if not isinstance(s, int) else str(s) for s in shape) + "]"


def check_against_graph(card: ModelCard, graph_inputs, graph_outputs, source: str = "the model") -> None:
    """Check the card against onnxruntime's ``NodeArg`` lists (``name``, ``shape``, ``type``)."""
    graph_in = {a.name: a for a in graph_inputs}
    card_in = {x.name: x for x in card.inputs}
    problems = []
    not_in_graph = [n for n in card_in if n not in graph_in]
    if not_in_graph:
        problems.append(
            f"card inputs {listed(not_in_graph)} are not inputs of the graph "
            f"(graph inputs: {listed(graph_in) or 'none'})"
        )
    not_in_card = [n for n in graph_in if n not in card_in]
    if not_in_card:
        problems.append(f"graph inputs {listed(not_in_card)} are not described in the card")
    for name, spec in card_in.items():
        arg = graph_in.get(name)
        if arg is None:
            continue
        if arg.type not in ("tensor(float)",):
            problems.append(
                f"input '{shorten(name)}' must be float32 (tensor(float)), the graph has {arg.type}"
            )
        expected = _expected_dims(spec)
        shape = list(arg.shape) if arg.shape is not None else None
        if shape is None:
            continue
        if len(shape) != len(expected) + 1:
            problems.append(
                f"input '{shorten(name)}' ({spec.kind}) must have rank {len(expected) + 1} "
                f"[N, {', '.join(map(str, expected))}], the graph has {_dims_text(shape)}"
            )
            continue
        for axis, (got, want) in enumerate(zip(shape[1:], expected, strict=True), start=1):
            if isinstance(got, int) and got > 0 and got != want:
                problems.append(
                    f"input '{shorten(name)}' axis {axis} is {got} in the graph but the card implies {want} "
                    f"(graph {_dims_text(shape)}, card [N, {', '.join(map(str, expected))}])"
                )
    outputs = {a.name: a for a in graph_outputs}
    out = outputs.get(card.output.name)
    if out is None:
        problems.append(
            f"output '{shorten(card.output.name)}' is not an output of the graph (outputs: {listed(outputs)})"
        )
    elif out.shape:
        last = out.shape[-1]
        if isinstance(last, int) and last > 0 and last != len(card.species):
            problems.append(
                f"output '{shorten(card.output.name)}' has {last} columns "
                f"but the card lists {len(card.species)} species"
            )
    if problems:
        raise ModelCardError(
            f"The model card of {source} does not match its graph: " + "; ".join(problems) + "."
        )


def read_model_card(onnx_path, session=None) -> ModelCard:
    """The validated card of an ONNX model, checked against its graph.

    ``session``: an onnxruntime ``InferenceSession`` already open on the file (optional).
    """
    if not isinstance(onnx_path, str | os.PathLike):
        raise ModelCardError(f"The model must be the path of an .onnx file, not {shown(onnx_path)}.")
    path = os.fspath(onnx_path)
    base = os.path.basename(path)
    if session is None:
        if os.path.isdir(path):
            raise ModelCardError(f"{path} is a folder: give the model's .onnx file.")
        if not os.path.isfile(path):
            raise ModelCardError(f"Model file not found: {path}")
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover - depends on the install
            from .errors import MissingDependencyError

            raise MissingDependencyError(
                "Reading a model needs the onnxruntime package (pip install onnxruntime)."
            ) from error
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelCardError(
                f"'{base}' is not an ONNX model onnxruntime can load: {first[:300]}"
            ) from None
    meta = session.get_modelmeta().custom_metadata_map or {}
    text = meta.get(METADATA_KEY)
    if text is None:
        raise ModelCardError(
            f"This model has no '{METADATA_KEY}' card ('{base}' has no metadata entry '{METADATA_KEY}'): "
            f"add one describing its species, inputs and output; see {CONTRACT_DOC}."
        )
    card = ModelCard.from_json(text)
    check_against_graph(card, session.get_inputs(), session.get_outputs(), source=f"'{base}'")
    return card


def embed_model_card(onnx_model_proto, card):
    """Put ``card`` (a :class:`ModelCard` or a dict) in an ``onnx.ModelProto``'s metadata.

    Replaces an existing ``geoplant`` entry; returns the proto. Tools and tests only:
    needs the ``onnx`` package.
    """
    import onnx  # noqa: F401  (imported lazily: loading the plugin does not import it)

    text = card.to_json() if isinstance(card, ModelCard) else json.dumps(card)
    props = onnx_model_proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = text
    return onnx_model_proto

"""The ``geoplant-onnx/1`` model card as data: its JSON parsed and validated field by field.

:class:`ModelCard` holds a card's species, output, inputs (:class:`core.cardinput.InputSpec`)
and grid; :meth:`ModelCard.from_json` / :meth:`ModelCard.from_dict` validate it, naming the
faulty field. The contract is written up in ``docs/model-contract.md``; reading a card from
an ONNX file and checking it against the graph is :mod:`core.modelcard`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .cardfields import CONTRACT_DOC, fail, is_int, is_number, listed, shorten, shown, text_field
from .cardinput import InputSpec
from .errors import ModelCardError

FORMAT = "geoplant-onnx/1"
METADATA_KEY = "geoplant"
ACTIVATIONS = ("sigmoid", "softmax", "none")
#: the largest species id a card may give: top-K rasters are int32 with -1 as nodata
MAX_SPECIES_ID = 2**31 - 1
#: the largest card read, bytes of JSON (UTF-8): a card with GeoPlant's 11,255 species
#: names is about 0.6 MB (0.9 MB indented); larger is not a card but a mistake or an attack
MAX_CARD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Species:
    id: int
    name: str


@dataclass(frozen=True)
class OutputSpec:
    name: str
    activation: str  # "sigmoid" | "softmax" | "none"


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
            fail("format", f"must be {FORMAT!r}, not {shown(fmt)}; this plugin reads only that version")
        texts = {
            k: text_field(d, k, "", required=False) for k in ("name", "description", "license", "citation")
        }

        species_list = d.get("species")
        if not isinstance(species_list, list) or not species_list:
            fail("species", 'must be a non-empty list of {"id": int, "name": str}')
        species = []
        for i, s in enumerate(species_list):
            if not isinstance(s, dict):
                fail(f"species[{i}]", 'must be an object {"id": int, "name": str}')
            sid = s.get("id")
            if isinstance(sid, float) and sid.is_integer():
                sid = int(sid)
            if not is_int(sid):
                fail(f"species[{i}].id", f"must be a whole number, not {shown(sid)}")
            if not 0 <= sid <= MAX_SPECIES_ID:
                fail(
                    f"species[{i}].id",
                    f"must be from 0 to {MAX_SPECIES_ID:,} (top-K rasters hold ids as 32-bit integers, "
                    f"-1 for no data), not {shown(sid)}",
                )
            name = text_field(s, "name", f"species[{i}].")
            species.append(Species(sid, name))
        seen: dict[int, int] = {}
        for i, s in enumerate(species):
            if s.id in seen:
                fail(f"species[{i}].id", f"{s.id} is already used by species[{seen[s.id]}]")
            seen[s.id] = i

        out = d.get("output")
        if not isinstance(out, dict):
            fail("output", 'must be an object {"name": <output name>, "activation": ...}')
        out_name = text_field(out, "name", "output.")
        activation = out.get("activation")
        if activation not in ACTIVATIONS:
            fail("output.activation", f"must be one of {', '.join(ACTIVATIONS)}, not {shown(activation)}")

        raw_inputs = d.get("inputs")
        if not isinstance(raw_inputs, list) or not raw_inputs:
            fail("inputs", "must be a non-empty list, one entry per ONNX input")
        inputs = tuple(InputSpec.from_dict(x, f"inputs[{i}]") for i, x in enumerate(raw_inputs))
        names = [x.name for x in inputs]
        for i, n in enumerate(names):
            if names.index(n) != i:
                fail(f"inputs[{i}].name", f"{shown(n)} is already used by inputs[{names.index(n)}]")

        grid = None
        g = d.get("grid")
        if g is not None:
            if not isinstance(g, dict):
                fail("grid", 'must be an object {"crs": "EPSG:3035", "cell_size_m": 100}')
            crs = text_field(g, "crs", "grid.")
            size = g.get("cell_size_m")
            if not is_number(size) or size <= 0:
                fail("grid.cell_size_m", f"must be a positive number of metres, not {shown(size)}")
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

"""Model cards for GeoPlant's multimodal ensemble, and the full preprocessing behind them.

:data:`PRESETS` states, per preset and input, every step that turned raw data into the
tensor the network was trained on, in order, with where each number comes from. The
``geoplant-onnx/1`` card that :func:`card` emits states all of it: each input's
``preprocess`` steps (the engine applies them exactly, clip and power included) and, for a
cube, its ``dimensions`` and ``name_template`` instead of 504 / 912 listed names
(``docs/model-contract.md``). :func:`legacy_card` emits the older form (``fill``, ``mean``,
``std``, listed ``variables``), which cannot state GLC24's clip and power.

Sources (malpolon 2.1.2, ``malpolon/data/datasets/geolifeclef2024_pre_extracted.py``):
NaN -> 0 for the cubes (``torch.nan_to_num``, lines 70 and 97) before the normalisation;
train normalisation lines 471-481, test normalisation lines 495-504 (``Normalize`` per
channel: the cubes with one value repeated over their 6 / 4 channels); Sentinel-2 GLC24
patches read as the RGB and NIR JPEG values, float32 0-255 (lines 126-128).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from . import malpolon as mme

LANDSAT_BANDS = ("red", "green", "blue", "nir", "swir1", "swir2")
LANDSAT_QUARTERS = (1, 2, 3, 4)
LANDSAT_YEARS = tuple(range(2000, 2021))  # 21 years
#: the order of the cube's first axis, as checked on GeoPlant's .pt files (docs/geoplant-formats.md)
BIOCLIM_VARIABLES = ("pr", "tas", "tasmax", "tasmin")
BIOCLIM_YEARS = tuple(range(2000, 2019))  # 19 years
MONTHS = tuple(range(1, 13))
S2_BANDS = ("red", "green", "blue", "nir")

SOURCE = "malpolon 2.1.2 malpolon/data/datasets/geolifeclef2024_pre_extracted.py"


@dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple


@dataclass(frozen=True)
class InputPreset:
    """One model input: its tensor, where its values come from, and every step applied."""

    name: str
    kind: str  # "cube" | "patch"
    #: cube: its axes (C order) and how one element's raster variable is named
    dimensions: tuple[Dimension, ...] = ()
    name_template: str = ""
    #: patch: bands, pixels per side, metres per pixel
    bands: tuple[str, ...] = ()
    size: int = 0
    pixel_size_m: float = 0.0
    #: the steps from the raster's values to the tensor, in order (proposed card syntax)
    preprocess: tuple[dict, ...] = ()
    #: where each number was read, and what the card of today cannot state
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(d.values) for d in self.dimensions)

    def variables(self) -> list[str]:
        """Every cube element's variable name, in C order of the dimensions."""
        names = [d.name for d in self.dimensions]
        return [
            self.name_template.format(**dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*(d.values for d in self.dimensions))
        ]

    def affine(self) -> dict:
        """The part of :attr:`preprocess` today's card states: fill, mean, std."""
        out: dict = {}
        for step in self.preprocess:
            if step["op"] == "fill_nan":
                out["fill"] = step["value"]
            elif step["op"] == "normalise":
                out["mean"], out["std"] = step["mean"], step["std"]
        return out


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    inputs: tuple[InputPreset, ...]
    description: str
    citation: str = (
        "Picek et al., GeoPlant: Spatial Plant Species Prediction Dataset, NeurIPS 2024 Datasets and "
        "Benchmarks; model: malpolon glc24_multimodal_ensemble (Picek, Larcher)."
    )
    notes: tuple[str, ...] = field(default=())


def _cube(
    name: str,
    dimensions: tuple[Dimension, ...],
    name_template: str,
    line: int,
    mean: float,
    std: float,
    source: str,
    note: str,
) -> InputPreset:
    """A cube input of malpolon's ensemble: NaN -> 0 (``SOURCE``:``line``), then normalised."""
    return InputPreset(
        name=name,
        kind="cube",
        dimensions=dimensions,
        name_template=name_template,
        preprocess=(
            {"op": "fill_nan", "value": 0.0},
            {"op": "normalise", "mean": mean, "std": std},
        ),
        sources=(f"{SOURCE}:{line} nan_to_num", source),
        notes=(note,),
    )


def _landsat(mean: float, std: float, source: str) -> InputPreset:
    dimensions = (
        Dimension("band", LANDSAT_BANDS),
        Dimension("quarter", LANDSAT_QUARTERS),
        Dimension("year", LANDSAT_YEARS),
    )
    note = (
        "values in the units of GeoPlant's Landsat cubes "
        "(Ecodatacube quarterly mosaics, 3..120 in the samples)"
    )
    return _cube("landsat", dimensions, "landsat_{band}_{year}_q{quarter}", 70, mean, std, source, note)


def _bioclim(mean: float, std: float, source: str) -> InputPreset:
    dimensions = (
        Dimension("variable", BIOCLIM_VARIABLES),
        Dimension("year", BIOCLIM_YEARS),
        Dimension("month", MONTHS),
    )
    note = "CHELSA monthly values as stored in GeoPlant's cubes (temperatures in 0.1 K)"
    return _cube("bioclim", dimensions, "{variable}_{year}-{month:02d}", 97, mean, std, source, note)


GLC24_S2_MEAN = [78.761, 82.859, 71.288, 146.082]
GLC24_S2_STD = [26.074, 24.484, 23.275, 39.518]
GLC25_S2_MEAN = [629.624, 691.815, 460.605, 2959.370]
GLC25_S2_STD = [435.995, 371.396, 342.897, 925.369]

GLC24 = Preset(
    name="glc24",
    title="GeoPlant multimodal ensemble (GLC24 preprocessing)",
    description=(
        "malpolon's multimodal ensemble: Landsat cube [6,4,21], CHELSA monthly climate cube [4,19,12], "
        "Sentinel-2 128 x 128 px at 10 m from an L2A reflectance mosaic (0..10000): the card's steps "
        "put it on GLC24's JPEG scale (clipped to 0..10000, divided by 10000, raised to 1/2.5, times 255)."
    ),
    inputs=(
        _landsat(30.071, 24.860, f"{SOURCE}:472-473 train Normalize(30.071, 24.860)"),
        _bioclim(3884.726, 2939.538, f"{SOURCE}:474-475 train Normalize(3884.726, 2939.538)"),
        InputPreset(
            name="sentinel",
            kind="patch",
            bands=S2_BANDS,
            size=128,
            pixel_size_m=10.0,
            preprocess=(
                {"op": "fill_nan", "value": 0.0},
                {"op": "clip", "min": 0.0, "max": 10000.0},
                {"op": "scale", "factor": 1e-4},
                {"op": "power", "exponent": 0.4},
                {"op": "scale", "factor": 255.0},
                {"op": "normalise", "mean": GLC24_S2_MEAN, "std": GLC24_S2_STD},
            ),
            sources=(
                f"{SOURCE}:126-128 RGB + NIR JPEG values as float32 (0..255)",
                f"{SOURCE}:476-477 train Normalize per channel",
                "clip/divide/power/x255: GLC24 data description (how the JPEGs were made), not in malpolon",
            ),
            notes=(
                "the JPEGs hold the result rounded to 0..255 and JPEG-compressed: not reproduced",
                "malpolon's test transform uses NIR mean 143.796, std 43.626 (lines 500-501)",
                "fill 0: malpolon never sees missing pixels in a JPEG; 0 is the cubes' policy",
            ),
        ),
    ),
)

GLC25 = Preset(
    name="glc25",
    title="GeoPlant multimodal ensemble (GLC25 preprocessing)",
    description=(
        "malpolon's multimodal ensemble on GLC25 inputs: Landsat cube [6,4,21], CHELSA monthly climate "
        "cube [4,19,12], Sentinel-2 64 x 64 px at 10 m as int16 L2A reflectance (GLC25 TIFF patches)."
    ),
    inputs=(
        _landsat(30.071, 24.860, f"{SOURCE}:472-473 (GLC24 values; no GLC25 dataset in malpolon 2.1.2)"),
        _bioclim(3884.726, 2939.538, f"{SOURCE}:474-475 (GLC24 values; no GLC25 dataset in malpolon 2.1.2)"),
        InputPreset(
            name="sentinel",
            kind="patch",
            bands=S2_BANDS,
            size=64,
            pixel_size_m=10.0,
            preprocess=(
                {"op": "fill_nan", "value": 0.0},
                {"op": "normalise", "mean": GLC25_S2_MEAN, "std": GLC25_S2_STD},
            ),
            sources=(
                "issue #12 (GLC25 train statistics); not in malpolon 2.1.2, which has no GLC25 dataset",
            ),
            notes=("GLC25 TIFF nodata is -1: a mosaic's nodata becomes the fill 0",),
        ),
    ),
    notes=("the cube statistics are GLC24's: check them against the training code of the checkpoint",),
)

PRESETS = {p.name: p for p in (GLC24, GLC25)}


def species_list(num_classes: int, names: dict[int, str] | None = None) -> list[dict]:
    """``[{"id": i, "name": ...}]`` for output index i = speciesId i (malpolon's labels)."""
    names = names or {}
    return [{"id": i, "name": names.get(i) or f"species {i}"} for i in range(num_classes)]


def _input_card(x: InputPreset) -> dict:
    """One card input with ``preprocess`` steps (and cube ``dimensions`` + ``name_template``)."""
    d: dict = {"name": x.name, "kind": x.kind}
    if x.kind == "cube":
        d["shape"] = list(x.shape)
        d["dimensions"] = [{"name": dim.name, "values": list(dim.values)} for dim in x.dimensions]
        d["name_template"] = x.name_template
    else:
        d.update(bands=list(x.bands), size=x.size, pixel_size_m=x.pixel_size_m)
    d["preprocess"] = [dict(s) for s in x.preprocess]
    return d


def _legacy_input_card(x: InputPreset) -> dict:
    d: dict = {"name": x.name, "kind": x.kind}
    if x.kind == "cube":
        d.update(shape=list(x.shape), variables=x.variables())
    else:
        d.update(bands=list(x.bands), size=x.size, pixel_size_m=x.pixel_size_m)
    affine = x.affine()
    if "mean" in affine:
        d["mean"], d["std"] = affine["mean"], affine["std"]
    if "fill" in affine:
        d["fill"] = affine["fill"]
    return d


def card(
    preset: str,
    num_classes: int = mme.NUM_CLASSES,
    names: dict[int, str] | None = None,
    name: str = "",
    legacy: bool = False,
) -> dict:
    """A ``geoplant-onnx/1`` card for the MME with ``preset``'s inputs and every
    preprocessing step (``legacy``: the older fill/mean/std form, without clip and power)."""
    p = PRESETS[preset]
    if num_classes < 1:
        raise ValueError("num_classes must be positive")
    return {
        "format": "geoplant-onnx/1",
        "name": name or p.title,
        "description": p.description,
        "citation": p.citation,
        "species": species_list(num_classes, names),
        "output": {"name": mme.OUTPUT_NAME, "activation": "sigmoid"},
        "inputs": [(_legacy_input_card if legacy else _input_card)(x) for x in p.inputs],
        "grid": {"crs": "EPSG:3035", "cell_size_m": 1000},
    }


def proposed_card(preset: str, num_classes: int = mme.NUM_CLASSES, names=None, name: str = "") -> dict:
    """:func:`card` (the proposal of ``docs/real-models.md`` is now the card's form)."""
    return card(preset, num_classes, names, name)


def legacy_card(preset: str, num_classes: int = mme.NUM_CLASSES, names=None, name: str = "") -> dict:
    """:func:`card` in the older form (fill, mean, std, listed cube variables): no clip or
    power, so a GLC24 model then needs its Sentinel-2 mosaic on the JPEG scale already."""
    return card(preset, num_classes, names, name, legacy=True)


def check_table() -> None:
    """Internal consistency of :data:`PRESETS` (shapes against the MME's inputs)."""
    for p in PRESETS.values():
        shapes = {x.name: x.shape for x in p.inputs if x.kind == "cube"}
        assert shapes == {"landsat": (6, 4, 21), "bioclim": (4, 19, 12)}, shapes
        for x in p.inputs:
            if x.kind == "cube":
                assert len(x.variables()) == math.prod(x.shape) == len(set(x.variables()))

#!/usr/bin/env python3
"""A small, synthetic GeoPlant world in the real GeoPlant / GLC25 formats (seeded, deterministic).

The area (about 30 km x 30 km in the Cevennes foothills north of Montpellier, France) is real;
everything in it is made up. The generator builds a plausible landscape and a community of
virtual species with known suitability (the virtual-species method of SDM research), then writes:

- ``EnvironmentalRasters/**/<Variable>.tif``: one-band GeoTIFFs in EPSG:4326 at the dataset's
  resolutions, stored like the sources GeoPlant uses (CHELSA Bio1/Bio4/Bio12 at 30 arc-seconds as
  scaled uint16, elevation at 3 arc-seconds, SoilGrids pH x 10 at 7.5 arc-seconds, MODIS-like IGBP
  land cover at 15 arc-seconds, human footprint at 30 arc-seconds). File stem and band
  description are the GeoPlant variable name.
- ``SatelliteMosaic/sentinel2_mosaic_utm31n.tif``: a 4-band (red, green, blue, nir) 10 m
  Sentinel-2-like mosaic (reflectance x 10000, uint16) in UTM 31N, drawn from the 10 m land cover.
- ``GLC25_PA_metadata_{train,test}.csv``: presence-absence surveys in the GLC25 columns, one row
  per (survey, species) with ``speciesId`` written as a float.
- ``SatelitePatches/PA-{train,test}/CD/AB/<id>.tiff``: GLC25-style 64 x 64 px, 10 m patches
  (int16, nodata -1) in LAEA Europe, cut from the mosaic.
- ``EnvironmentalValues/<Group>/GLC25-PA-{train,test}-<group>.csv``: the raster values at the surveys.
- ``truth/``: the true richness (sum of the species' probabilities) and the true suitability of a
  few species on the EPSG:3035 100 m grid the demo predicts on; ``species.csv`` and ``world.json``.

Suitability of a species at a point: product of Gaussian responses to 2-3 of the published
variables (Bio1, Bio12, Soilgrid-phh2o, HumanFootprint: the raster pixel that contains the point,
in physical units) times a habitat term (the fractions of 10 m land-cover classes in the 320 m
square around the point), turned into a probability with a logistic link whose inflection is
set so that the mean probability over the landscape equals the species' drawn prevalence.

Usage: ``python tools/make_world.py OUT_DIR [--seed 0] [--size-km 30]``. Takes a few seconds;
the world is generated, not committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject, transform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from geoplant_qgis.core.geoplant.layout import glc25_patch_relpath, write_glc25_patch  # noqa: E402
from geoplant_qgis.core.geoplant.observations import STANDARD_COLUMNS  # noqa: E402

#: bump when the generator's output changes, so cached worlds are regenerated
GENERATOR_VERSION = 1

LAEA = CRS.from_epsg(3035)
WGS84 = CRS.from_epsg(4326)
UTM31N = CRS.from_epsg(32631)

#: MODIS IGBP land-cover codes used here
LC_NAMES = {
    1: "Evergreen needleleaf forest",
    4: "Deciduous broadleaf forest",
    5: "Mixed forest",
    7: "Open shrubland",
    10: "Grassland",
    12: "Cropland",
    13: "Urban and built-up",
    16: "Barren",
}
LC_CODES = tuple(LC_NAMES)
#: reflectance x 10000 per class (red, green, blue, nir), Sentinel-2 L2A-like
LC_REFLECTANCE = {
    1: (230, 380, 240, 2200),
    4: (300, 520, 300, 3300),
    5: (270, 450, 270, 2750),
    7: (950, 880, 620, 2300),
    10: (620, 830, 520, 3100),
    12: (1150, 1050, 820, 2700),
    13: (1550, 1450, 1350, 1900),
    16: (2100, 1900, 1650, 2400),
}

# Variables: name -> (folder, csv group, pixel size in degrees, dtype, nodata); :func:`encode`
# turns physical units into the stored values (CHELSA: K x 10, mm x 10).
VARIABLES = {
    "Bio1": ("Climate", "bioclimatic", 1 / 120, "uint16", 0),
    "Bio4": ("Climate", "bioclimatic", 1 / 120, "uint16", 0),
    "Bio12": ("Climate", "bioclimatic", 1 / 120, "uint16", 0),
    "Elevation": ("Elevation", "elevation", 1 / 1200, "int16", -32768),
    "Soilgrid-phh2o": ("SoilGrids", "soilgrids", 1 / 480, "int16", -32768),
    "LandCover": ("LandCover", "landcover", 1 / 240, "uint8", 255),
    "HumanFootprint": ("HumanFootprint", "human_footprint", 1 / 120, "int32", 2147483647),
}
CSV_FOLDERS = {
    "bioclimatic": "ClimateAverage_1981-2010",
    "elevation": "Elevation",
    "soilgrids": "SoilGrids",
    "landcover": "LandCover",
    "human_footprint": "HumanFootprint",
}
PA_COLUMNS = list(STANDARD_COLUMNS)  # the GLC24/GLC25 presence-absence columns, in order
PATCH_SIZE = 64
PATCH_PIXEL_M = 10.0
HABITAT_WINDOW_M = 320.0
GRID_CELL_M = 100.0


def decode(name: str, stored):
    """Stored raster values -> physical units (degC, mm, m, pH, class, index)."""
    v = np.asarray(stored, dtype=np.float64)
    if name == "Bio1":
        return v / 10.0 - 273.15
    if name in ("Bio12",):
        return v / 10.0
    if name == "Soilgrid-phh2o":
        return v / 10.0
    return v


def encode(name: str, physical):
    v = np.asarray(physical, dtype=np.float64)
    if name == "Bio1":
        return np.round((v + 273.15) * 10.0)
    if name in ("Bio12", "Soilgrid-phh2o"):
        return np.round(v * 10.0)
    return np.round(v)


@dataclass(frozen=True)
class WorldSpec:
    seed: int = 0
    size_km: float = 30.0
    center_lon: float = 3.62
    center_lat: float = 44.02
    n_species: int = 120
    n_train: int = 2400
    n_test: int = 600
    truth_species: int = 4
    margin_km: float = 2.0

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- fields


def _fractal(rng, n, beta, lowcut=1.0):
    """An n x n zero-mean unit-std random field with a 1/f^beta power spectrum (periodic)."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = (np.maximum(f, lowcut / n)) ** (-beta / 2.0)
    amp[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, amp.shape)
    noise = rng.normal(size=amp.shape)
    spec = amp * noise * np.exp(1j * phase)
    field = np.fft.irfft2(spec, s=(n, n))
    return (field - field.mean()) / field.std()


def _smooth(a, sigma_px):
    """Gaussian smoothing by FFT (periodic edges; the grids carry a margin)."""
    ny, nx = a.shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma_px) ** 2 * (fx * fx + fy * fy))
    return np.fft.irfft2(np.fft.rfft2(a) * kernel, s=a.shape)


def _bilinear(field, x0, y0, res, xs, ys):
    """Bilinear lookup in a north-up grid (top-left corner x0, y0; square pixels ``res``)."""
    col = (np.asarray(xs) - x0) / res - 0.5
    row = (y0 - np.asarray(ys)) / res - 0.5
    ny, nx = field.shape
    c0 = np.clip(np.floor(col).astype(int), 0, nx - 2)
    r0 = np.clip(np.floor(row).astype(int), 0, ny - 2)
    fc = np.clip(col - c0, 0, 1)
    fr = np.clip(row - r0, 0, 1)
    return (
        field[r0, c0] * (1 - fc) * (1 - fr)
        + field[r0, c0 + 1] * fc * (1 - fr)
        + field[r0 + 1, c0] * (1 - fc) * fr
        + field[r0 + 1, c0 + 1] * fc * fr
    )


class Landscape:
    """Continuous fields on a 40 m EPSG:3035 base grid and 10 m land cover, over area + margin."""

    BASE_M = 40.0

    def __init__(self, spec: WorldSpec, rng):
        (cx,), (cy,) = transform(WGS84, LAEA, [spec.center_lon], [spec.center_lat])
        half = spec.size_km * 500.0
        x0 = np.floor((cx - half) / GRID_CELL_M) * GRID_CELL_M
        y1 = np.floor((cy + half) / GRID_CELL_M) * GRID_CELL_M
        size = spec.size_km * 1000.0
        self.area = (x0, y1 - size, x0 + size, y1)  # left, bottom, right, top (EPSG:3035)
        m = spec.margin_km * 1000.0
        self.bx0, self.by1 = x0 - m, y1 + m
        n = int(round((size + 2 * m) / self.BASE_M))
        self.n = n
        res = self.BASE_M
        yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        u, v = xx / n, 1 - yy / n  # 0..1 east, 0..1 north

        # Terrain: fractal relief on a regional slope rising to the north-west (Mont Aigoual side).
        relief = _fractal(rng, n, beta=3.4, lowcut=2.0)
        relief = (relief - relief.min()) / (relief.max() - relief.min())
        trend = 0.55 * v + 0.45 * (1 - u)
        elev = 120 + 1350 * (0.6 * trend + 0.4 * relief) ** 1.5 + 40 * _fractal(rng, n, beta=2.4)
        self.elev = np.clip(elev, 20, None)
        gy, gx = np.gradient(self.elev, res)
        gy = -gy  # rows go south
        self.slope = np.degrees(np.arctan(np.hypot(gx, gy)))
        # Climate: lapse-rate temperature, continentality, orographic rain from the south-east
        self.bio1 = 15.2 - 0.0062 * self.elev - 0.8 * v + 0.25 * _smooth(_fractal(rng, n, 3.0), 5)
        self.bio4 = 560 + 45 * (1 - u) + 30 * v - 0.02 * self.elev
        windward = np.maximum(0.0, -0.7 * gx + 0.7 * gy)  # upslope for a south-east wind
        orographic = _smooth(windward, 1500 / res)
        self.bio12 = 650 + 0.6 * self.elev + 3500 * orographic + 60 * _fractal(rng, n, 3.0)
        # Soils: limestone plateaus (causses) vs schist/granite, leached where it rains
        geology = _smooth(_fractal(rng, n, 3.0), 800 / res)
        limestone = 1 / (1 + np.exp(-5 * (geology - 0.3)))
        self.ph = np.clip(
            5.3 + 2.5 * limestone - 0.0005 * (self.bio12 - 1000) + 0.12 * _fractal(rng, n, 2.0), 4.0, 8.4
        )
        # Towns in the lowlands
        low = np.argsort(self.elev.ravel())[: n * n // 5]
        towns = rng.choice(low, size=5, replace=False)
        d = np.full((n, n), np.inf)
        for t, radius in zip(towns, (2000, 1300, 1000, 800, 700), strict=True):
            ty, tx = divmod(int(t), n)
            dist = np.hypot(xx - tx, yy - ty) * res / radius
            d = np.minimum(d, dist)
        self.town_d = d  # distance to the nearest town in town radii

        # Land cover: class scores from the environment + patchy noise, at 40 m, argmax
        fine = {c: 0.7 * _fractal(rng, n, 1.4) + 0.3 * _fractal(rng, n, 3.0) for c in LC_CODES}
        e, s, t, p = self.elev, self.slope, self.bio1, self.ph
        score = {
            1: -1.0 + 0.0030 * (e - 700) + 0.8 * (p < 6),
            4: 0.0 - 0.0000035 * (e - 650) ** 2 + 0.5 * (p < 6.2),
            5: 0.1 - 0.0000025 * (e - 850) ** 2,
            7: -0.4 + 0.02 * s + 1.0 * (p > 6.6) - 0.0015 * (e - 300),
            10: -0.25 + 0.0025 * (e - 800) + 1.0 * (p > 6.6) * (s < 15),
            12: 2.3 - 0.004 * e - 0.04 * s,
            13: 3.0 - 2.5 * d,
            16: -2.2 + 0.06 * s + 0.002 * (e - 1000),
        }
        stack = np.stack([score[c] + 0.8 * fine[c] for c in LC_CODES])
        lc40 = np.asarray(LC_CODES, dtype=np.uint8)[np.argmax(stack, axis=0)]
        # 10 m land cover: 40 m parcels refined with a little boundary noise
        k = int(self.BASE_M / 10)
        lc10 = np.repeat(np.repeat(lc40, k, axis=0), k, axis=1)
        jitter = rng.integers(-1, 2, size=(2, lc10.shape[0], lc10.shape[1]), dtype=np.int8)
        r = np.clip(np.arange(lc10.shape[0])[:, None] + jitter[0], 0, lc10.shape[0] - 1)
        c = np.clip(np.arange(lc10.shape[1])[None, :] + jitter[1], 0, lc10.shape[1] - 1)
        self.lc10 = lc10[r, c]
        self.lc40 = lc40
        # Human footprint (0-50): towns, farmland, a little everywhere
        crop = _smooth((lc40 == 12).astype(float), 500 / res)
        urban = _smooth((lc40 == 13).astype(float), 400 / res)
        self.hfp = np.clip(
            2 + 45 * urban + 14 * crop + 10 * np.exp(-d / 3) + 1.5 * _fractal(rng, n, 2.5), 0, 50
        )
        # integral images of the 10 m land cover, for habitat fractions at any point
        self._integral = {}
        for code in LC_CODES:
            ii = np.zeros((lc10.shape[0] + 1, lc10.shape[1] + 1), dtype=np.int32)
            ii[1:, 1:] = np.cumsum(np.cumsum(self.lc10 == code, axis=0, dtype=np.int32), axis=1)
            self._integral[code] = ii

    # fields in physical units at EPSG:3035 points
    def field(self, name, xs, ys):
        arr = {
            "Bio1": self.bio1,
            "Bio4": self.bio4,
            "Bio12": self.bio12,
            "Elevation": self.elev,
            "Soilgrid-phh2o": self.ph,
            "HumanFootprint": self.hfp,
        }[name]
        return _bilinear(arr, self.bx0, self.by1, self.BASE_M, xs, ys)

    def landcover_mode(self, xs, ys):
        col = np.clip(((np.asarray(xs) - self.bx0) // self.BASE_M).astype(int), 0, self.n - 1)
        row = np.clip(((self.by1 - np.asarray(ys)) // self.BASE_M).astype(int), 0, self.n - 1)
        return self.lc40[row, col]

    def habitat_fractions(self, xs, ys, window_m=HABITAT_WINDOW_M):
        """[N, classes] fractions of each 10 m land-cover class in the square window around points."""
        h = int(window_m / 20)
        col = np.floor((np.asarray(xs) - self.bx0) / 10.0).astype(int)
        row = np.floor((self.by1 - np.asarray(ys)) / 10.0).astype(int)
        n10 = self.lc10.shape[0]
        r0, r1 = np.clip(row - h, 0, n10), np.clip(row + h, 0, n10)
        c0, c1 = np.clip(col - h, 0, n10), np.clip(col + h, 0, n10)
        area = np.maximum((r1 - r0) * (c1 - c0), 1)
        out = np.empty((len(col), len(LC_CODES)), dtype=np.float64)
        for i, code in enumerate(LC_CODES):
            ii = self._integral[code]
            out[:, i] = (ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]) / area
        return out


# ----------------------------------------------------------------------------- rasters


def _degree_grid(area_3035, res_deg, pad_deg):
    """A 4326 grid aligned on multiples of res_deg covering the 3035 area (+ padding)."""
    left, bottom, right, top = area_3035
    xs = np.array([left, right, left, right, (left + right) / 2, (left + right) / 2, left, right])
    ys = np.array([bottom, bottom, top, top, bottom, top, (bottom + top) / 2, (bottom + top) / 2])
    lon, lat = transform(LAEA, WGS84, xs, ys)
    w = np.floor((min(lon) - pad_deg) / res_deg) * res_deg
    e = np.ceil((max(lon) + pad_deg) / res_deg) * res_deg
    s = np.floor((min(lat) - pad_deg) / res_deg) * res_deg
    n = np.ceil((max(lat) + pad_deg) / res_deg) * res_deg
    width = int(round((e - w) / res_deg))
    height = int(round((n - s) / res_deg))
    return from_origin(w, n, res_deg, res_deg), width, height


def write_tif(
    path, array, transform_, crs, nodata=None, descriptions=(), tiled=False, compress="deflate"
) -> str:
    """A GeoTIFF of ``array`` ([bands,] rows, cols), written under a temporary name then renamed
    (the world's rasters; the tests' and the bench's fixture rasters too)."""
    path = os.fspath(path)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform_,
        "nodata": nodata,
    }
    if compress:
        profile["compress"] = compress
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    tmp = path + ".part"
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array)
        for i, d in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, d)
    os.replace(tmp, path)
    return path


class PublishedRasters:
    """The env rasters as written (stored values), with pixel lookup like the engine's sampler."""

    def __init__(self):
        self.grids = {}  # name -> (array stored, transform)

    def add(self, name, stored, transform_):
        self.grids[name] = (stored, transform_)

    def stored_at(self, name, lon, lat):
        arr, t = self.grids[name]
        col = np.floor((np.asarray(lon) - t.c) / t.a).astype(int)
        row = np.floor((np.asarray(lat) - t.f) / t.e).astype(int)
        if (col < 0).any() or (row < 0).any() or (col >= arr.shape[1]).any() or (row >= arr.shape[0]).any():
            raise ValueError(f"points outside the {name} raster")
        return arr[row, col]

    def physical_at(self, name, lon, lat):
        return decode(name, self.stored_at(name, lon, lat))


def write_env_rasters(land: Landscape, out_dir) -> tuple[dict, PublishedRasters]:
    paths, published = {}, PublishedRasters()
    for name, (folder, _group, res, dtype, nodata) in VARIABLES.items():
        t, width, height = _degree_grid(land.area, res, pad_deg=0.01)
        cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        lon = t.c + cols * t.a
        lat = t.f + rows * t.e
        xs, ys = transform(WGS84, LAEA, lon.ravel(), lat.ravel())
        xs, ys = np.asarray(xs), np.asarray(ys)
        if name == "LandCover":
            # MODIS-like 15" land cover: the majority 40 m class over 5 x 5 points in the pixel
            sub = (np.arange(5) + 0.5) / 5 - 0.5
            ox, oy = np.meshgrid(sub * t.a, sub * t.e)
            slon = (lon.ravel()[:, None] + ox.ravel()[None, :]).ravel()
            slat = (lat.ravel()[:, None] + oy.ravel()[None, :]).ravel()
            sx, sy = transform(WGS84, LAEA, slon, slat)
            classes = land.landcover_mode(np.asarray(sx), np.asarray(sy)).reshape(-1, 25)
            counts = np.stack([(classes == c).sum(axis=1) for c in LC_CODES], axis=1)
            stored = np.asarray(LC_CODES, dtype=np.uint8)[np.argmax(counts, axis=1)].reshape(height, width)
        else:
            stored = encode(name, land.field(name, xs, ys)).reshape(height, width)
        stored = stored.astype(dtype)
        path = os.path.join(out_dir, "EnvironmentalRasters", folder, f"{name}.tif")
        write_tif(path, stored, t, WGS84, nodata, [name])
        paths[name] = path
        published.add(name, stored, t)
    return paths, published


def write_mosaic(land: Landscape, out_dir, rng):
    """The 10 m Sentinel-2-like mosaic in UTM 31N and its LAEA 10 m resampling (for patches)."""
    left, bottom, right, top = land.area
    pad = 1500.0
    xs = [left - pad, right + pad, left - pad, right + pad]
    ys = [bottom - pad, bottom - pad, top + pad, top + pad]
    ux, uy = transform(LAEA, UTM31N, xs, ys)
    w, e = np.floor(min(ux) / 10) * 10, np.ceil(max(ux) / 10) * 10
    s, n = np.floor(min(uy) / 10) * 10, np.ceil(max(uy) / 10) * 10
    width, height = int((e - w) / 10), int((n - s) / 10)
    ut = from_origin(w, n, 10.0, 10.0)
    lc_utm = np.zeros((height, width), dtype=np.uint8)
    reproject(
        land.lc10,
        lc_utm,
        src_transform=from_origin(land.bx0, land.by1, 10.0, 10.0),
        src_crs=LAEA,
        dst_transform=ut,
        dst_crs=UTM31N,
        resampling=Resampling.nearest,
        src_nodata=0,
        dst_nodata=0,
    )
    # hillshade-like brightness from the terrain (sun from the south-east), per UTM pixel
    cols, rows = np.meshgrid(np.arange(0, width, 4) + 0.5, np.arange(0, height, 4) + 0.5)
    lx, ly = transform(UTM31N, LAEA, (w + cols * 10).ravel(), (n - rows * 10).ravel())
    e1 = land.field("Elevation", np.asarray(lx) + 40, np.asarray(ly) - 40)
    e0 = land.field("Elevation", np.asarray(lx) - 40, np.asarray(ly) + 40)
    shade = np.clip(1.0 + (e1 - e0) / 300.0, 0.75, 1.2).reshape(cols.shape)
    shade = np.repeat(np.repeat(shade, 4, axis=0), 4, axis=1)[:height, :width]
    refl = np.zeros((4, height, width), dtype=np.float32)
    table = np.zeros((256, 4), dtype=np.float32)
    for code, values in LC_REFLECTANCE.items():
        table[code] = values
    base = table[lc_utm]  # [H, W, 4]
    grain = rng.normal(1.0, 0.07, size=(height, width)).astype(np.float32)
    parcels = np.repeat(np.repeat(rng.normal(1.0, 0.12, size=(height // 8 + 1, width // 8 + 1)), 8, 0), 8, 1)
    parcels = parcels[:height, :width].astype(np.float32)
    for b in range(4):
        refl[b] = base[..., b] * grain * parcels * shade
    stored = np.clip(np.round(refl), 1, 10000).astype(np.uint16)
    stored[:, lc_utm == 0] = 0
    path = os.path.join(out_dir, "SatelliteMosaic", "sentinel2_mosaic_utm31n.tif")
    write_tif(path, stored, ut, UTM31N, 0, ["red", "green", "blue", "nir"], tiled=True)
    # LAEA 10 m resampling on a grid aligned to multiples of 10 m (patch windows are slices)
    lx0, ly1 = np.floor((left - 1000) / 10) * 10, np.ceil((top + 1000) / 10) * 10
    lw = int(round((right + 1000 - lx0) / 10))
    lh = int(round((ly1 - (bottom - 1000)) / 10))
    laea = np.zeros((4, lh, lw), dtype=np.uint16)
    lt = from_origin(lx0, ly1, 10.0, 10.0)
    reproject(
        stored,
        laea,
        src_transform=ut,
        src_crs=UTM31N,
        dst_transform=lt,
        dst_crs=LAEA,
        resampling=Resampling.nearest,
        src_nodata=0,
        dst_nodata=0,
    )
    return path, laea, lt


# ----------------------------------------------------------------------------- species


ENV_RESPONSES = ("Bio1", "Bio12", "Soilgrid-phh2o", "HumanFootprint")
#: habitat guilds: preference per land-cover class (LC_CODES order)
GUILDS = {
    "forest": (1.0, 1.0, 1.0, 0.25, 0.1, 0.05, 0.0, 0.0),
    "conifer": (1.0, 0.2, 0.6, 0.1, 0.1, 0.0, 0.0, 0.0),
    "broadleaf": (0.2, 1.0, 0.7, 0.2, 0.1, 0.0, 0.0, 0.0),
    "open": (0.05, 0.1, 0.1, 0.8, 1.0, 0.4, 0.1, 0.4),
    "garrigue": (0.0, 0.1, 0.1, 1.0, 0.5, 0.1, 0.05, 0.5),
    "arable": (0.0, 0.0, 0.05, 0.2, 0.5, 1.0, 0.4, 0.0),
    "ruderal": (0.0, 0.05, 0.05, 0.3, 0.4, 0.8, 1.0, 0.2),
    "generalist": (0.6, 0.7, 0.7, 0.8, 0.8, 0.6, 0.3, 0.3),
}
LOGIT_BETA = 0.07


class Community:
    """Virtual species: Gaussian responses x habitat term -> logistic link with prevalence control."""

    def __init__(self, spec: WorldSpec, rng, reference_env: dict, reference_hab):
        n = spec.n_species
        self.ids = np.sort(rng.choice(np.arange(1, 11255), size=n, replace=False)).astype(int)
        self.names = [f"Virtualis {self._epithet(i)}" for i in range(n)]
        m = len(next(iter(reference_env.values())))
        self.params = []
        guilds = list(GUILDS)
        for _ in range(n):
            k = int(rng.integers(2, 4))
            chosen = [ENV_RESPONSES[j] for j in sorted(rng.choice(len(ENV_RESPONSES), size=k, replace=False))]
            if "Bio1" not in chosen and rng.random() < 0.6:
                chosen[0] = "Bio1"
            responses = {}
            for var in dict.fromkeys(chosen):
                ref = reference_env[var]
                lo, hi = np.percentile(ref, [2, 98])
                mu = float(ref[int(rng.integers(0, m))])
                sd = float((hi - lo) * rng.uniform(0.15, 0.45))
                responses[var] = (mu, sd)
            guild = guilds[int(rng.integers(0, len(guilds)))]
            prevalence = float(np.clip(np.exp(rng.normal(np.log(0.12), 0.8)), 0.02, 0.55))
            self.params.append({"responses": responses, "guild": guild, "prevalence": prevalence})
        # prevalence control: alpha such that the mean probability over the landscape = prevalence
        for p in self.params:
            suit = self._suitability(p, reference_env, reference_hab)
            lo, hi = -1.0, 2.0
            for _ in range(60):
                mid = (lo + hi) / 2
                if (1 / (1 + np.exp(-(suit - mid) / LOGIT_BETA))).mean() > p["prevalence"]:
                    lo = mid
                else:
                    hi = mid
            p["alpha"] = (lo + hi) / 2

    @staticmethod
    def _epithet(i):
        roots = ["alp", "sylv", "cev", "calc", "rup", "prat", "mont", "aren", "umbr", "sax", "luc", "ferr"]
        ends = ["ensis", "icola", "ina", "estris", "osa", "ata", "iana", "ella", "ifolia", "oides"]
        series = i // (len(roots) * len(ends)) + 1
        return f"{roots[i % len(roots)]}{ends[(i // len(roots)) % len(ends)]}-{series}"

    @staticmethod
    def _suitability(p, env, hab):
        s = np.ones(len(hab))
        for var, (mu, sd) in p["responses"].items():
            s = s * np.exp(-0.5 * ((env[var] - mu) / sd) ** 2)
        pref = np.asarray(GUILDS[p["guild"]])
        habitat = hab @ pref
        return s * (0.15 + 0.85 * habitat)

    def probabilities(self, env: dict, hab) -> np.ndarray:
        """[N, S] float64 probability of presence."""
        out = np.empty((len(hab), len(self.params)))
        for j, p in enumerate(self.params):
            suit = self._suitability(p, env, hab)
            out[:, j] = 1 / (1 + np.exp(-(suit - p["alpha"]) / LOGIT_BETA))
        return out


# ----------------------------------------------------------------------------- world


def env_at(published: PublishedRasters, xs, ys):
    """Physical values of the response variables (published rasters) at EPSG:3035 points."""
    lon, lat = transform(LAEA, WGS84, xs, ys)
    lon, lat = np.asarray(lon), np.asarray(lat)
    return {v: published.physical_at(v, lon, lat) for v in ENV_RESPONSES}


def _surveys(land, rng, n, first_id):
    left, bottom, right, top = land.area
    xs = rng.uniform(left + 50, right - 50, n)
    ys = rng.uniform(bottom + 50, top - 50, n)
    lon, lat = transform(LAEA, WGS84, xs, ys)
    lon = np.round(np.asarray(lon), 6)
    lat = np.round(np.asarray(lat), 6)
    xs, ys = transform(WGS84, LAEA, lon, lat)  # the rounded coordinates are the truth
    ids = first_id + np.sort(rng.choice(np.arange(1, 900000), size=n, replace=False))
    return ids.astype(np.int64), lon, lat, np.asarray(xs), np.asarray(ys)


def make_world(out_dir, seed=0, size_km=30.0, **options) -> dict:
    """Generate the world into ``out_dir``; returns a dict of paths (also saved in ``world.json``).

    ``options``: any other :class:`WorldSpec` field (n_species, n_train, n_test, center_lon, ...).
    Same arguments -> same files, value for value.
    """
    spec = WorldSpec(seed=seed, size_km=float(size_km), **options)
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    land = Landscape(spec, np.random.default_rng([spec.seed, 1]))
    raster_paths, published = write_env_rasters(land, out_dir)
    mosaic_path, laea, lt = write_mosaic(land, out_dir, np.random.default_rng([spec.seed, 2]))

    # reference sample of the landscape for species parameters and prevalence control
    left, bottom, right, top = land.area
    ref_x = rng.uniform(left, right, 20000)
    ref_y = rng.uniform(bottom, top, 20000)
    community = Community(spec, rng, env_at(published, ref_x, ref_y), land.habitat_fractions(ref_x, ref_y))

    files = {"rasters": raster_paths, "mosaic": mosaic_path}
    region_rng = np.random.default_rng([spec.seed, 3])
    for subset, n, first_id in (("train", spec.n_train, 1000000), ("test", spec.n_test, 5000000)):
        ids, lon, lat, xs, ys = _surveys(land, rng, n, first_id)
        prob = community.probabilities(env_at(published, xs, ys), land.habitat_fractions(xs, ys))
        present = rng.random(prob.shape) < prob
        keep = present.any(axis=1)
        ids, lon, lat, xs, ys, present = ids[keep], lon[keep], lat[keep], xs[keep], ys[keep], present[keep]
        year = region_rng.integers(2017, 2022, len(ids))
        unc = region_rng.choice([1.0, 5.0, 10.0, 50.0], len(ids))
        area_m2 = region_rng.choice([4.0, 16.0, 25.0, 100.0], len(ids))
        si, sj = np.nonzero(present)
        pa = pd.DataFrame(
            {
                "lon": lon[si],
                "lat": lat[si],
                "year": year[si],
                "geoUncertaintyInM": unc[si],
                "areaInM2": area_m2[si],
                "region": "MEDITERRANEAN",
                "country": "France",
                "speciesId": community.ids[sj].astype(float),
                "surveyId": ids[si],
            },
            columns=PA_COLUMNS,
        )
        pa_path = os.path.join(out_dir, f"GLC25_PA_metadata_{subset}.csv")
        pa.to_csv(pa_path, index=False)
        files[f"pa_{subset}"] = pa_path
        # environmental values: the stored raster values at the surveys, one CSV per group
        env_files = {}
        for group, folder in CSV_FOLDERS.items():
            frame = pd.DataFrame({"surveyId": ids})
            for name, (_f, g, *_rest) in VARIABLES.items():
                if g == group:
                    frame[name] = published.stored_at(name, lon, lat)
            path = os.path.join(out_dir, "EnvironmentalValues", folder, f"GLC25-PA-{subset}-{group}.csv")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            frame.to_csv(path, index=False)
            env_files[group] = path
        files[f"env_{subset}"] = env_files
        # GLC25 patches: 64 x 64 px of the LAEA 10 m resampling, centred on the survey
        patch_dir = os.path.join(out_dir, "SatelitePatches", f"PA-{subset}")
        half = PATCH_SIZE * PATCH_PIXEL_M / 2
        for sid, x, y in zip(ids, xs, ys, strict=True):
            px0 = np.round((x - half) / 10.0) * 10.0
            py1 = np.round((y + half) / 10.0) * 10.0
            c0 = int(round((px0 - lt.c) / 10.0))
            r0 = int(round((lt.f - py1) / 10.0))
            block = laea[:, r0 : r0 + PATCH_SIZE, c0 : c0 + PATCH_SIZE].astype(np.int16)
            block[block == 0] = -1
            write_glc25_patch(
                os.path.join(patch_dir, glc25_patch_relpath(int(sid))),
                block,
                from_origin(px0, py1, 10.0, 10.0),
                LAEA,
                nodata=-1,
            )
        files[f"patches_{subset}"] = patch_dir

    # truth on the demo grid: EPSG:3035, 100 m cells over the area
    ncol = int(round((right - left) / GRID_CELL_M))
    nrow = int(round((top - bottom) / GRID_CELL_M))
    cc, rr = np.meshgrid(np.arange(ncol) + 0.5, np.arange(nrow) + 0.5)
    gx = (left + cc * GRID_CELL_M).ravel()
    gy = (top - rr * GRID_CELL_M).ravel()
    prob = community.probabilities(env_at(published, gx, gy), land.habitat_fractions(gx, gy))
    gt = from_origin(left, top, GRID_CELL_M, GRID_CELL_M)
    truth_dir = os.path.join(out_dir, "truth")
    richness = prob.sum(axis=1).reshape(nrow, ncol).astype(np.float32)
    files["true_richness"] = os.path.join(truth_dir, "true_richness.tif")
    write_tif(files["true_richness"], richness, gt, LAEA, -9999.0, ["true richness"])
    prevalence = prob.mean(axis=0)
    order = np.argsort(-prevalence)
    picks = order[np.linspace(0, len(order) // 2, spec.truth_species).astype(int)]
    files["true_suitability"] = {}
    for j in picks:
        sid = int(community.ids[j])
        path = os.path.join(truth_dir, f"true_suitability_{sid}.tif")
        write_tif(
            path,
            prob[:, j].reshape(nrow, ncol).astype(np.float32),
            gt,
            LAEA,
            -9999.0,
            [f"{community.names[j]} ({sid})"],
        )
        files["true_suitability"][str(sid)] = path
    species = pd.DataFrame(
        {
            "speciesId": community.ids,
            "name": community.names,
            "guild": [p["guild"] for p in community.params],
            "target_prevalence": [round(p["prevalence"], 6) for p in community.params],
            "grid_prevalence": np.round(prevalence, 6),
            "responses": [json.dumps(p["responses"]) for p in community.params],
            "alpha": [round(p["alpha"], 6) for p in community.params],
        }
    )
    files["species"] = os.path.join(out_dir, "species.csv")
    species.to_csv(files["species"], index=False)
    manifest = {
        "what": "Synthetic GeoPlant-format world (made up: not real observations).",
        "spec": asdict(spec),
        "key": spec.key(),
        "generator_version": GENERATOR_VERSION,
        "area_epsg3035": list(land.area),
        "grid": {"crs": "EPSG:3035", "cell_size_m": GRID_CELL_M, "width": ncol, "height": nrow},
        "land_cover_classes": {str(k): v for k, v in LC_NAMES.items()},
        "files": files,
    }
    path = os.path.join(out_dir, "world.json")
    with open(path + ".part", "w") as fh:
        json.dump(_relative(manifest, out_dir), fh, indent=1, sort_keys=True)
    os.replace(path + ".part", path)
    files["world"] = path
    files["seconds"] = round(time.perf_counter() - t0, 2)
    return files


def _relative(obj, root):
    if isinstance(obj, dict):
        return {k: _relative(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v, root) for v in obj]
    if isinstance(obj, str) and obj.startswith(root + os.sep):
        return os.path.relpath(obj, root)
    return obj


def load_world(out_dir) -> dict | None:
    """The manifest of a world in ``out_dir`` with absolute paths, or None if there is none."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    path = os.path.join(out_dir, "world.json")
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        manifest = json.load(fh)

    def absolute(obj):
        if isinstance(obj, dict):
            return {k: absolute(v) for k, v in obj.items()}
        if isinstance(obj, str) and not os.path.isabs(obj) and os.path.exists(os.path.join(out_dir, obj)):
            return os.path.join(out_dir, obj)
        return obj

    manifest["files"] = absolute(manifest["files"])
    return manifest


def ensure_world(out_dir, seed=0, size_km=30.0, **options) -> dict:
    """The manifest of the world in ``out_dir``, generated first unless it is present and current."""
    spec = WorldSpec(seed=seed, size_km=float(size_km), **options)
    manifest = load_world(out_dir)
    if manifest is None or manifest.get("key") != spec.key():
        stale = os.path.join(os.path.abspath(os.fspath(out_dir)), "world.json")
        if os.path.exists(stale):
            os.remove(stale)  # an interrupted regeneration must not look current
        make_world(out_dir, seed=seed, size_km=size_km, **options)
        manifest = load_world(out_dir)
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size-km", type=float, default=30.0)
    parser.add_argument("--species", type=int, default=WorldSpec.n_species)
    parser.add_argument("--train", type=int, default=WorldSpec.n_train)
    parser.add_argument("--test", type=int, default=WorldSpec.n_test)
    args = parser.parse_args(argv)
    files = make_world(
        args.out_dir,
        seed=args.seed,
        size_km=args.size_km,
        n_species=args.species,
        n_train=args.train,
        n_test=args.test,
    )
    print(f"world written to {os.path.abspath(args.out_dir)} in {files['seconds']} s")


if __name__ == "__main__":
    main()

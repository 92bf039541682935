"""Observations aggregated per survey: attributes plus species ids (CSR), streamed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...progress import as_progress
from .reader import read_observations
from .rows import MAX_EXAMPLES, TEXT_COLUMNS, ReadStats

#: survey attributes of the aggregated table, in output order
SURVEY_COLUMNS = (
    "surveyId",
    "lon",
    "lat",
    "year",
    "country",
    "region",
    "geoUncertaintyInM",
    "areaInM2",
    "speciesIds",
    "richness",
)


@dataclass
class SurveyTable:
    """Surveys in compressed form: attributes plus species ids in CSR layout.

    ``attributes`` has one row per survey (sorted by surveyId; columns of
    :data:`SURVEY_COLUMNS` except speciesIds/richness); the species of survey ``i`` are
    ``species[offsets[i]:offsets[i + 1]]`` (distinct, ascending).
    """

    attributes: pd.DataFrame
    offsets: np.ndarray
    species: np.ndarray

    def __len__(self):
        return len(self.attributes)

    @property
    def richness(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)

    def species_strings(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Space-separated species ids of surveys ``start..stop`` (for GIS attribute tables)."""
        stop = len(self) if stop is None else stop
        flat = self.species[self.offsets[start] : self.offsets[stop]].astype(str).tolist()
        base = self.offsets[start]
        return [
            " ".join(flat[a - base : b - base])
            for a, b in zip(self.offsets[start:stop], self.offsets[start + 1 : stop + 1], strict=True)
        ]

    def to_frame(self) -> pd.DataFrame:
        frame = self.attributes.copy()
        flat = self.species.tolist()
        frame["speciesIds"] = [flat[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]
        frame["richness"] = self.richness
        return frame.reset_index(drop=True)[list(SURVEY_COLUMNS)]


_ATTRIBUTE_COLUMNS = [c for c in SURVEY_COLUMNS if c not in ("speciesIds", "richness")]


def _merge_attributes(parts: list[pd.DataFrame], conflicts: dict) -> pd.DataFrame:
    """Concatenate per-chunk survey attributes; the first row of a survey wins.

    Surveys seen at more than one position are recorded in ``conflicts`` (id -> positions).
    """
    if len(parts) > 1:
        for column in TEXT_COLUMNS:
            union = pd.api.types.union_categoricals(
                [p[column].astype("category") for p in parts], ignore_order=True
            )
            for p in parts:
                p[column] = pd.Categorical(p[column], categories=union.categories)
        merged = pd.concat(parts, ignore_index=True)
    else:
        merged = parts[0]
    positions = merged.drop_duplicates(["surveyId", "lon", "lat"], keep="first")
    repeated = positions["surveyId"].duplicated(keep=False).to_numpy()
    if repeated.any():
        for survey, lon, lat in positions.loc[repeated, ["surveyId", "lon", "lat"]].itertuples(index=False):
            conflicts.setdefault(int(survey), [])
            if len(conflicts[int(survey)]) < 3:
                conflicts[int(survey)].append((lon, lat))
    return positions.drop_duplicates("surveyId", keep="first")


def _merge_pairs(parts: list[np.ndarray]) -> np.ndarray:
    pairs = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def survey_table(path, progress=None, bounds=None, chunksize: int = 100_000, stats=None) -> SurveyTable:
    """Aggregate a PA/PO file into one record per survey, streaming with bounded memory.

    Memory grows with the number of surveys and distinct (survey, species) pairs, not
    with the number of rows. Attributes are those of the survey's first valid row.
    """
    progress = as_progress(progress)
    stats = stats if stats is not None else ReadStats()
    attribute_parts: list[pd.DataFrame] = []
    pair_parts: list[np.ndarray] = []
    pending_rows = 0
    conflicts: dict[int, list] = {}
    for frame in read_observations(path, chunksize=chunksize, progress=progress, bounds=bounds, stats=stats):
        attrs = frame.drop_duplicates(["surveyId", "lon", "lat"], keep="first")[_ATTRIBUTE_COLUMNS]
        attrs = attrs.reset_index(drop=True)
        for column in TEXT_COLUMNS:
            attrs[column] = attrs[column].astype("category")
        attribute_parts.append(attrs)
        if stats.has_species:
            pairs = np.column_stack(
                [frame["surveyId"].to_numpy(np.int64), frame["speciesId"].to_numpy(np.int64)]
            )
            pair_parts.append(np.unique(pairs, axis=0))
        pending_rows += len(frame)
        if len(attribute_parts) >= 16 or pending_rows >= 2_000_000:
            attribute_parts = [_merge_attributes(attribute_parts, conflicts)]
            if pair_parts:
                pair_parts = [_merge_pairs(pair_parts)]
            pending_rows = 0
    if not attribute_parts:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in _ATTRIBUTE_COLUMNS})
        empty["surveyId"] = empty["surveyId"].astype(np.int64)
        return SurveyTable(empty, np.zeros(1, np.int64), np.zeros(0, np.int64))
    attributes = (
        _merge_attributes(attribute_parts, conflicts)
        .sort_values("surveyId", kind="stable")
        .reset_index(drop=True)
    )
    for column in TEXT_COLUMNS:
        attributes[column] = attributes[column].astype(object).where(attributes[column].notna(), None)
    survey_ids = attributes["surveyId"].to_numpy(np.int64)
    if conflicts:
        examples = "; ".join(
            f"survey {sid} at " + ", ".join(f"({lon}, {lat})" for lon, lat in where)
            for sid, where in list(conflicts.items())[:MAX_EXAMPLES]
        )
        progress.warning(
            f"{len(conflicts)} survey(s) have rows at different positions; the first row's position "
            f"is used. Examples: {examples}"
        )
    if pair_parts:
        pairs = _merge_pairs(pair_parts)  # sorted by survey then species, distinct
        species = pairs[:, 1].copy()
        counts = np.bincount(np.searchsorted(survey_ids, pairs[:, 0]), minlength=len(survey_ids))
    else:
        species = np.zeros(0, np.int64)
        counts = np.zeros(len(survey_ids), np.int64)
    offsets = np.zeros(len(survey_ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    progress.info(f"{len(survey_ids)} survey(s), {len(species)} (survey, species) pair(s).")
    return SurveyTable(attributes, offsets, species)


def aggregate_surveys(path, progress=None, bounds=None, chunksize: int = 100_000) -> pd.DataFrame:
    """One row per survey: surveyId, lon, lat, year, country, region, geoUncertaintyInM,
    areaInM2, speciesIds (sorted list of distinct ints, empty without a speciesId column),
    richness (number of distinct species). Streams the file; sorted by surveyId."""
    return survey_table(path, progress=progress, bounds=bounds, chunksize=chunksize).to_frame()

"""GeoPlant / GeoLifeCLEF presence-absence and presence-only metadata CSVs, streamed.

Columns (GLC24/GLC25): ``lon,lat,year,geoUncertaintyInM,areaInM2,region,country,
speciesId,surveyId``; GeoPlant adds ``county,district``, PO files add publisher, date,
... (ignored here). One row per (survey, species); ``speciesId`` is written as a float
(``6310.0``); test files have no ``speciesId`` column. Coordinates are WGS84.

Decisions (see docs/geoplant-formats.md):

* required columns are ``lon``, ``lat`` and ``surveyId``; the other standard columns are
  optional (filled with empty values when absent);
* ``areaInM2`` written as ``-inf`` (or ``inf``) means "unknown" in the dataset: it is read
  as NaN (an empty field in a GeoPackage), like an empty ``areaInM2``; the count is reported;
* a row is malformed when a required value is missing, a numeric column holds text, an id
  or the year is not a whole number or lies outside the 64-bit integer range
  (-9223372036854775808..9223372036854775807), lon/lat are out of range, or the row has
  more or fewer fields than the header (at any line). Malformed rows are skipped, counted,
  and reported with examples through ``progress.warning`` at the end of the file, never
  silently. Blank lines are not rows.

One job per file: ``rows`` (the columns, a chunk's rows checked and typed, the problem
counts), ``reader`` (the streaming reader: byte blocks, numpy field counts, pandas' C parser,
Python's ``csv`` for quoted fields), ``surveys`` (one record per survey, species in CSR form).
"""

from .reader import BLOCK_BYTES, check_columns, read_observations
from .rows import (
    EMPTY_TOKENS,
    FLOAT_COLUMNS,
    INT64_MAX,
    INT64_MIN,
    INTEGER_COLUMNS,
    MAX_EXAMPLES,
    REQUIRED_COLUMNS,
    STANDARD_COLUMNS,
    TEXT_COLUMNS,
    ReadStats,
    numeric_text,
)
from .surveys import SURVEY_COLUMNS, SurveyTable, aggregate_surveys, survey_table

__all__ = [
    "BLOCK_BYTES",
    "EMPTY_TOKENS",
    "FLOAT_COLUMNS",
    "INT64_MAX",
    "INT64_MIN",
    "INTEGER_COLUMNS",
    "MAX_EXAMPLES",
    "REQUIRED_COLUMNS",
    "STANDARD_COLUMNS",
    "SURVEY_COLUMNS",
    "TEXT_COLUMNS",
    "ReadStats",
    "SurveyTable",
    "aggregate_surveys",
    "check_columns",
    "numeric_text",
    "read_observations",
    "survey_table",
]

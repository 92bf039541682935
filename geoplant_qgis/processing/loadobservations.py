"""geoplant:loadobservations -- a GeoPlant PA/PO metadata CSV as a point layer."""

from __future__ import annotations

import math
import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPoint,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterVectorDestination,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.errors import OutputError
from ..core.files import Publication, check_outputs, sidecars_of, temporary_sibling
from ..core.progress import ScaledProgress
from .base import GeoPlantAlgorithm
from .styles import apply_on_load, style_survey_points

WGS84 = "EPSG:4326"
_BATCH = 5_000


def area_filter(alg, parameters, context):
    """(lon/lat bounds or None, predicate(lons, lats) -> list[bool] or None) from EXTENT / AREA."""
    wgs84 = QgsCoordinateReferenceSystem(WGS84)
    bounds = None
    if parameters.get("EXTENT") not in (None, ""):
        extent = alg.parameterAsExtent(parameters, "EXTENT", context, wgs84)
        if not extent.isNull() and not extent.isEmpty():
            bounds = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
    predicate = None
    if parameters.get("AREA") not in (None, ""):
        source = alg.parameterAsSource(parameters, "AREA", context)
        if source is not None:
            transform = QgsCoordinateTransform(source.sourceCrs(), wgs84, context.transformContext())
            parts = []
            for feature in source.getFeatures():
                geometry = QgsGeometry(feature.geometry())
                if geometry.isEmpty():
                    continue
                geometry.transform(transform)
                parts.append(geometry)
            if not parts:
                raise QgsProcessingException("The AREA layer has no polygon.")
            area = QgsGeometry.unaryUnion(parts)
            box = area.boundingBox()
            area_bounds = (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum())
            if bounds is None:
                bounds = area_bounds
            else:
                bounds = (
                    max(bounds[0], area_bounds[0]),
                    max(bounds[1], area_bounds[1]),
                    min(bounds[2], area_bounds[2]),
                    min(bounds[3], area_bounds[3]),
                )
                if bounds[0] > bounds[2] or bounds[1] > bounds[3]:
                    raise QgsProcessingException("EXTENT and AREA do not overlap.")
            engine = QgsGeometry.createGeometryEngine(area.constGet())
            engine.prepareGeometry()

            def predicate(lons, lats):
                return [
                    engine.intersects(QgsPoint(float(x), float(y))) for x, y in zip(lons, lats, strict=True)
                ]

    return bounds, predicate


class VectorFileOutput:
    """A vector file written under a temporary name in the destination folder, renamed at the end.

    The folders made for it are recorded (a :class:`~core.files.Publication`): ``discard()``
    removes the temporary files and those folders when left empty; the user's previous file
    and its sidecars are untouched until ``commit()`` replaces them all together.
    """

    def __init__(self, path, fields, context, crs=WGS84, progress=None):
        self.path = os.path.abspath(path)
        self.publication = Publication(progress)
        self.writer = None
        try:
            self.folder = folder = self.publication.folder(self.path)
        except BaseException:
            self.publication.discard()
            raise
        self.stem, self.ext = os.path.splitext(os.path.basename(self.path))
        self.tmp_stem = os.path.splitext(os.path.basename(temporary_sibling(self.path)))[0]
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = QgsVectorFileWriter.driverForExtension(self.ext) or "GPKG"
        options.layerName = self.stem
        options.fileEncoding = "UTF-8"
        self.tmp_path = os.path.join(folder, self.tmp_stem + self.ext)
        self.writer = QgsVectorFileWriter.create(
            self.tmp_path,
            fields,
            QgsWkbTypes.Point,
            QgsCoordinateReferenceSystem(crs),
            context.transformContext(),
            options,
        )
        if self.writer.hasError() != QgsVectorFileWriter.NoError:
            message = self.writer.errorMessage()
            self.discard()
            raise OutputError(f"Cannot create {self.path}: {message}")

    def add(self, features):
        if features and not self.writer.addFeatures(features):
            raise OutputError(f"Cannot write to {self.path}: {self.writer.errorMessage()}")

    def _tmp_files(self):
        prefix = self.tmp_stem + "."
        return [n for n in os.listdir(self.folder) if n.startswith(prefix)]

    def commit(self):
        """The file and its sidecars (shapefile parts, GeoPackage journal...) moved into
        place together; a rename that fails leaves the previous files as they were."""
        del self.writer
        self.writer = None  # closes the file: no journal left beside it
        for name in self._tmp_files():
            final = self.stem + name[len(self.tmp_stem) :]
            self.publication.add(os.path.join(self.folder, name), os.path.join(self.folder, final))
        self.publication.publish()
        return self.path

    def discard(self):
        self.writer = None
        for name in self._tmp_files():
            try:
                os.remove(os.path.join(self.folder, name))
            except OSError:
                pass
        self.publication.discard()  # the folders made for the output, when left empty


def _value(v):
    if v is None:
        return None
    try:
        if v != v:  # NaN, pandas NA raises TypeError
            return None
    except TypeError:
        return None
    if isinstance(v, float) and math.isinf(v):
        return None
    return v.item() if hasattr(v, "item") else v


# Field names and types of the two outputs, in the GeoPlant metadata's own names.
SURVEY_FIELDS = (
    ("surveyId", QVariant.LongLong),
    ("year", QVariant.Int),
    ("country", QVariant.String),
    ("region", QVariant.String),
    ("geoUncertaintyInM", QVariant.Double),
    ("areaInM2", QVariant.Double),
    ("speciesIds", QVariant.String),
    ("richness", QVariant.Int),
)
ROW_FIELDS = (
    ("surveyId", QVariant.LongLong),
    ("speciesId", QVariant.LongLong),
    ("year", QVariant.Int),
    ("country", QVariant.String),
    ("region", QVariant.String),
    ("geoUncertaintyInM", QVariant.Double),
    ("areaInM2", QVariant.Double),
)


def _fields(spec) -> QgsFields:
    fields = QgsFields()
    for name, kind in spec:
        fields.append(QgsField(name, kind))
    return fields


def survey_fields() -> QgsFields:
    return _fields(SURVEY_FIELDS)


def row_fields() -> QgsFields:
    return _fields(ROW_FIELDS)


def _point_feature(fields, lon, lat, attributes):
    feature = QgsFeature(fields)
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(float(lon), float(lat))))
    feature.setAttributes([_value(a) for a in attributes])
    return feature


class LoadObservationsAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "loadobservations"
    DISPLAY_NAME = "Load GeoPlant observations"
    HELP = (
        "Loads a GeoPlant / GeoLifeCLEF presence-absence or presence-only metadata CSV "
        "(lon, lat, year, geoUncertaintyInM, areaInM2, region, country, speciesId, surveyId) "
        "as points in EPSG:4326. AGGREGATE (default) makes one point per survey with its "
        "speciesIds (space separated) and richness (number of distinct species); otherwise one "
        "point per row. EXTENT / AREA keep the observations inside. The file is streamed; "
        "malformed rows are skipped and reported in the log with a count and examples; "
        "areaInM2 written as -inf (unknown) is loaded as empty."
    )
    REQUIRES = ("pandas",)

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFile(
                "INPUT", self.tr("Observations CSV (PA / PO metadata)"), extension="csv"
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean("AGGREGATE", self.tr("One point per survey"), defaultValue=True)
        )
        self.addParameter(QgsProcessingParameterExtent("EXTENT", self.tr("Extent"), optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "AREA", self.tr("Area (polygons)"), [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "OUTPUT", self.tr("Observations"), QgsProcessing.TypeVectorPoint
            )
        )
        self.addOutput(QgsProcessingOutputNumber("COUNT", self.tr("Points written")))
        self.addOutput(QgsProcessingOutputNumber("MALFORMED", self.tr("Malformed rows skipped")))

    def execute(self, parameters, context, feedback, progress):
        path = self.parameterAsFile(parameters, "INPUT", context)
        aggregate = self.parameterAsBoolean(parameters, "AGGREGATE", context)
        destination = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        bounds, predicate = area_filter(self, parameters, context)
        # pandas is imported when the algorithm runs, not when QGIS loads the plugin
        from ..core.geoplant.observations import ReadStats, read_observations, survey_table

        stats = ReadStats()
        fields = survey_fields() if aggregate else row_fields()
        names = [name for name, _ in (SURVEY_FIELDS if aggregate else ROW_FIELDS)]

        def batches():
            """(frame with lon, lat and the output's fields, progress after it or None)."""
            if not aggregate:
                scaled = ScaledProgress(progress, 0, 100)
                for frame in read_observations(path, progress=scaled, bounds=bounds, stats=stats):
                    yield frame, None
                return
            table = survey_table(path, progress=ScaledProgress(progress, 0, 80), bounds=bounds, stats=stats)
            n = len(table)
            for start in range(0, n, _BATCH):
                stop = min(start + _BATCH, n)
                frame = table.attributes.iloc[start:stop].assign(
                    speciesIds=table.species_strings(start, stop), richness=table.richness[start:stop]
                )
                yield frame, 80 + 20 * stop / max(n, 1)

        if destination.lower().split("|")[0].endswith((".shp", ".dbf")):
            raise QgsProcessingException(
                "A shapefile would cut the field names to 10 characters (geoUncertaintyInM) and the "
                "species lists to 254 characters, silently: save the observations as a GeoPackage "
                "(.gpkg) instead."
            )
        # an output that is the input (or one of its sidecars) is refused before anything starts
        check_outputs({"OUTPUT": [destination, *sidecars_of(destination)]}, {"INPUT": path})
        output = VectorFileOutput(destination, fields, context, progress=progress)
        count = 0
        try:
            for frame, done in batches():
                progress.check_cancelled()
                keep = None
                if predicate is not None and len(frame):
                    keep = predicate(frame["lon"].tolist(), frame["lat"].tolist())
                features = [
                    _point_feature(fields, lon, lat, list(values))
                    for j, (lon, lat, *values) in enumerate(
                        frame[["lon", "lat", *names]].itertuples(index=False)
                    )
                    if keep is None or keep[j]
                ]
                output.add(features)
                count += len(features)
                if done is not None:
                    progress.set_progress(done)
            progress.check_cancelled()
            final = output.commit()
        except BaseException:
            output.discard()
            raise
        progress.info(f"{count} point(s) written to {final} ({stats.malformed} malformed row(s) skipped).")
        apply_on_load(context, final, style_survey_points)
        return {"OUTPUT": final, "COUNT": count, "MALFORMED": stats.malformed}

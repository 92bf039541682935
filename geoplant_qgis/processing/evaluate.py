"""geoplant:evaluate — how good are predictions at presence-absence surveys (thin adapter).

Reads the parameters (layers are read here, in the algorithm's thread) and hands plain
data to :func:`geoplant_qgis.core.evaluate.evaluate_surveys`.
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsVectorLayer,
)

from ..core.errors import InputDataError, MissingDependencyError
from .base import GeoPlantAlgorithm
from .device import add_device, read_device
from .device import help_text as device_help
from .inputs import layer_file
from .params import (
    add_model_parameters,
    crs_text,
    given,
    is_null,
    raster_paths,
    read_number,
    whole_number,
)


def _whole(token) -> int:
    number = whole_number(token)
    if number is None:
        raise InputDataError(f"species id {str(token)!r} is not a whole number")
    return number


def _parse_ids(value) -> list[int]:
    """speciesIds as written by loadobservations ("12 57 311"), a list, or one id."""
    if is_null(value):
        return []
    if isinstance(value, list | tuple):
        return [_whole(v) for v in value]
    text = str(value).strip().strip("[]")
    if not text or text.upper() == "NULL":
        return []
    return [_whole(t) for t in text.replace(",", " ").split()]


def surveys_from_layer(layer):
    """A point layer (loadobservations: one point per survey with speciesIds, or one per row with
    speciesId) -> (DataFrame surveyId, x, y, speciesIds, the layer's CRS as text).

    Features without a geometry or a surveyId are skipped; their count is in
    ``frame.attrs["skipped"]``."""
    import pandas as pd

    names = layer.fields().names()
    if "surveyId" not in names:
        raise InputDataError(
            f"The layer '{layer.name()}' has no surveyId field; load it with geoplant:loadobservations."
        )
    per_survey = "speciesIds" in names
    if not per_survey and "speciesId" not in names:
        raise InputDataError(
            f"The layer '{layer.name()}' has neither a speciesIds nor a speciesId field: evaluation needs "
            "the species observed in each survey."
        )
    species_field = "speciesIds" if per_survey else "speciesId"
    rows = {}
    skipped = 0
    for feature in layer.getFeatures():
        geometry = feature.geometry()
        value = feature["surveyId"]
        if geometry is None or geometry.isEmpty() or is_null(value):
            skipped += 1
            continue
        try:
            sid = _whole(value)
        except InputDataError:
            raise InputDataError(
                f"The layer '{layer.name()}' has surveyId {str(value)!r}, which is not a whole number."
            ) from None
        point = geometry.asPoint() if not geometry.isMultipart() else geometry.asMultiPoint()[0]
        entry = rows.setdefault(sid, [point.x(), point.y(), set()])
        try:
            entry[2].update(_parse_ids(feature[species_field]))
        except InputDataError as error:
            raise InputDataError(f"The layer '{layer.name()}', survey {sid}: {error}.") from None
    frame = pd.DataFrame(
        [(sid, x, y, sorted(s)) for sid, (x, y, s) in sorted(rows.items())],
        columns=["surveyId", "x", "y", "speciesIds"],
    )
    frame.attrs["skipped"] = skipped
    return frame, crs_text(layer.crs())


class EvaluateAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "evaluate"
    DISPLAY_NAME = "Evaluate predictions at surveys"
    REQUIRES = ("numpy", "pandas")  # onnxruntime too when MODEL is used (checked at run time)
    HELP = (
        "Scores species predictions against presence-absence surveys with the GeoPlant / GeoLifeCLEF "
        "benchmark metric: the samples-averaged F1 of the top-K species set (K = 25 by default), plus "
        "recall@K, micro and macro ROC AUC and a reliability diagram.\n\n"
        "SURVEYS: a presence-absence CSV (GeoPlant PA metadata columns) or the point layer from "
        "'Load observations'. Predictions come either from PREDICTIONS (probability rasters written "
        "by 'Predict', bands '<name> (<id>)', sampled at the surveys) or from MODEL run at the surveys "
        "on RASTERS (MAPPING as in 'Predict').\n\n"
        "Beside the fixed K, the same F1 and recall with each survey's own K, GeoPlant's 'Top-K "
        "estimation': its expected richness (the sum of its probabilities) rounded, plus TOPK_MARGIN "
        "(a whole number, default 0, may be negative), from 1 to TOP_K: in the summary (F1_RICHNESS), "
        "the per-survey table (richness_k, f1_richness_k, recall_richness_k) and the report.\n\n"
        "TRAIN_SURVEYS (optional): the training surveys, for the naive baseline that predicts the K "
        "species most frequent in them everywhere.\n\n"
        "OUTPUT_REPORT: an HTML report with plots; OUTPUT_TABLE: one CSV row per survey.\n\n" + device_help()
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "SURVEYS", self.tr("Surveys (PA CSV or point layer)"), types=[QgsProcessing.TypeVector]
            )
        )
        add_model_parameters(
            self,
            "Model (.onnx), used when PREDICTIONS is empty",
            "Input rasters (for MODEL)",
            model_optional=True,
        )
        add_device(self)
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                "PREDICTIONS",
                self.tr("Probability rasters from Predict"),
                QgsProcessing.TypeRaster,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TOP_K",
                self.tr("K (top-K set)"),
                QgsProcessingParameterNumber.Integer,
                defaultValue=25,
                minValue=1,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TOPK_MARGIN",
                self.tr("Margin added to each survey's rounded richness for the richness-driven K"),
                QgsProcessingParameterNumber.Integer,
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "TRAIN_SURVEYS",
                self.tr("Training surveys (for the naive baseline)"),
                types=[QgsProcessing.TypeVector],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_REPORT", self.tr("Report (HTML)"), fileFilter="HTML files (*.html)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_TABLE",
                self.tr("Per-survey table (CSV)"),
                fileFilter="CSV files (*.csv)",
                optional=True,
            )
        )
        for name, label in (
            ("F1", "F1@K"),
            ("RECALL", "recall@K"),
            ("F1_RICHNESS", "F1 with K from each survey's expected richness"),
            ("AUC_MICRO", "AUC micro"),
            ("AUC_MACRO", "AUC macro"),
            ("BASELINE_F1", "naive baseline F1@K"),
            ("SURVEYS_EVALUATED", "surveys evaluated"),
        ):
            self.addOutput(QgsProcessingOutputNumber(name, self.tr(label)))

    def _surveys(self, parameters, name, context, progress):
        """(DataFrame surveyId, x, y, speciesIds, CRS text) from a CSV path or a vector layer."""
        from ..core.evaluate import surveys_from_csv

        value = parameters.get(name)
        if isinstance(value, str) and value.lower().endswith(".csv"):
            if not os.path.isfile(value):
                raise InputDataError(f"{name}: file not found: {value}")
            return surveys_from_csv(value, progress=progress), "EPSG:4326"
        layer = self.parameterAsLayer(parameters, name, context)
        if layer is None:
            raise InputDataError(f"{name} cannot be read: give a presence-absence CSV or a point layer.")
        source = layer.source().split("|")[0]
        if source.lower().endswith(".csv") and (
            not isinstance(layer, QgsVectorLayer) or not layer.isSpatial() or layer.providerType() != "ogr"
        ):
            return surveys_from_csv(source, progress=progress), "EPSG:4326"
        if not isinstance(layer, QgsVectorLayer) or not layer.isSpatial():
            raise InputDataError(f"{name} must be a point layer or a presence-absence CSV.")
        frame, crs = surveys_from_layer(layer)
        if frame.attrs.get("skipped"):
            progress.warning(
                f"{name}: {frame.attrs['skipped']} feature(s) without a point or a surveyId were left out."
            )
        return frame, crs

    def _input_file(self, parameters, name, context):
        value = parameters.get(name)
        if isinstance(value, str) and value.lower().endswith(".csv"):
            return value
        return layer_file(self, parameters, context, name)

    def execute(self, parameters, context, feedback, progress):
        from ..core.evaluate import check_evaluate_outputs, evaluate_surveys

        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        table = (
            self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context)
            if given(parameters, "OUTPUT_TABLE")
            else None
        )
        # outputs that are inputs (or each other): refused before anything is read
        input_files = {n: self._input_file(parameters, n, context) for n in ("SURVEYS", "TRAIN_SURVEYS")}
        layers = {
            n: raster_paths(self, parameters, context, n) if given(parameters, n) else []
            for n in ("RASTERS", "PREDICTIONS")
        }
        check_evaluate_outputs(
            report,
            table,
            model=self.parameterAsFile(parameters, "MODEL", context) or None,
            rasters=layers["RASTERS"],
            mapping=self.parameterAsString(parameters, "MAPPING", context) or None,
            predictions=layers["PREDICTIONS"],
            input_files=input_files,
        )
        surveys, crs = self._surveys(parameters, "SURVEYS", context, progress)
        train_lists = None
        if given(parameters, "TRAIN_SURVEYS"):
            train, _ = self._surveys(parameters, "TRAIN_SURVEYS", context, progress)
            train_lists = list(train["speciesIds"])
        predictions = []
        if given(parameters, "PREDICTIONS"):
            predictions = raster_paths(self, parameters, context, "PREDICTIONS")
        model = rasters = None
        mapping = self.parameterAsString(parameters, "MAPPING", context) or None
        if not predictions:
            model = self.parameterAsFile(parameters, "MODEL", context)
            if not model:
                raise InputDataError("Give PREDICTIONS (probability rasters) or a MODEL with its RASTERS.")
            from ..dependencies import MODEL_RUN_DEPENDENCIES, install_hint, missing_dependencies

            missing = missing_dependencies(MODEL_RUN_DEPENDENCIES)
            if missing:
                raise MissingDependencyError(
                    "Running a MODEL needs onnxruntime and onnx. " + install_hint(missing)
                )
            rasters = raster_paths(self, parameters, context, "RASTERS")
            if not rasters and not mapping:
                raise InputDataError(
                    "MODEL needs its input RASTERS (or a MAPPING) to predict at the surveys."
                )
        k = read_number(self, parameters, "TOP_K", context, default=25)
        if not QgsCoordinateReferenceSystem(crs).isValid():
            raise InputDataError(f"The surveys' CRS {crs!r} is not valid.")
        result = evaluate_surveys(
            surveys,
            crs,
            model=model,
            rasters=rasters or (),
            mapping=mapping,
            predictions=predictions or None,
            k=k,
            train_lists=train_lists,
            output_report=report,
            output_table=table,
            progress=progress,
            input_files=input_files,
            topk_margin=read_number(self, parameters, "TOPK_MARGIN", context, default=0),
            device=read_device(self, parameters, context),
        )
        outputs = {
            "OUTPUT_REPORT": report,
            "F1": result.f1,
            "RECALL": result.recall,
            "F1_RICHNESS": result.f1_richness,
            "AUC_MICRO": result.auc_micro,
            "AUC_MACRO": result.auc_macro,
            "BASELINE_F1": result.baseline["f1"] if result.baseline else None,
            "SURVEYS_EVALUATED": result.n_surveys,
        }
        if table:
            outputs["OUTPUT_TABLE"] = table
        return outputs

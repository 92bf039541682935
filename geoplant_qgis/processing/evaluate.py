"""geoplant:evaluate — how good are predictions at presence-absence surveys (thin adapter).

Reads the parameters (layers are read here, in the algorithm's thread) and hands plain
data to :func:`geoplant_qgis.core.evaluate.evaluate_surveys`.
"""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
)

from ..core.errors import InputDataError
from .base import GeoPlantAlgorithm
from .device import add_device, read_device
from .device import help_text as device_help
from .params import add_model_parameters, given, raster_paths, read_number
from .surveys import input_file, read_surveys


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

    def execute(self, parameters, context, feedback, progress):
        from ..core.evaluate import check_evaluate_outputs, evaluate_surveys

        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        table = (
            self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context)
            if given(parameters, "OUTPUT_TABLE")
            else None
        )
        # outputs that are inputs (or each other): refused before anything is read
        input_files = {n: input_file(self, parameters, context, n) for n in ("SURVEYS", "TRAIN_SURVEYS")}
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
        surveys, crs = read_surveys(self, parameters, "SURVEYS", context, progress)
        train_lists = None
        if given(parameters, "TRAIN_SURVEYS"):
            train, _ = read_surveys(self, parameters, "TRAIN_SURVEYS", context, progress)
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
            from ..dependencies import check_model_run_dependencies

            check_model_run_dependencies()
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

"""geoplant:presence — presence/absence maps from a probability raster by a named rule (thin adapter).

Reads the parameters and hands paths and plain data to
:func:`geoplant_qgis.core.decisions.presence.presence_maps`.
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import GeoPlantAlgorithm
from .params import given, raster_layer_path, read_number
from .surveys import input_file, read_surveys

#: the rules, by name (the order of the enum's options); core.decisions.thresholds.RULES
RULES = ("fixed", "max_tss", "equal_sens_spec", "max_kappa")


def read_rule(alg, parameters, context, name="RULE") -> str:
    """The rule's name: given by name (``RULE=max_tss``) or, as older scripts do, by index."""
    value = parameters.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return RULES[0]
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if 0 <= index < len(RULES):
            return RULES[index]
        raise QgsProcessingException(f"{name} {value} is not a rule; give one of {', '.join(RULES)}.")
    text = str(value).strip().lower()
    if text not in RULES:
        raise QgsProcessingException(f"{name} {value!r} is not a rule; give one of {', '.join(RULES)}.")
    return text


class PresenceAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "presence"
    DISPLAY_NAME = "Presence maps by a named threshold rule"
    REQUIRES = ("numpy", "rasterio", "pandas")
    HELP = (
        "Turns a probability raster from 'Predict' (bands '<name> (<id>)') into presence/absence maps: "
        "one uint8 band per species, 1 present (p >= the threshold), 0 absent, 255 nodata, with the same "
        "band descriptions; the rule and the threshold are written into each band's metadata.\n\n"
        "RULE: fixed (THRESHOLD), max_tss (maximum sensitivity + specificity - 1), equal_sens_spec "
        "(sensitivity = specificity), max_kappa (maximum Cohen's kappa). The last three choose each "
        "species' threshold from its probabilities at the presence-absence SURVEYS (the raster cell under "
        "each survey), searching every distinct probability; ties go to the lowest threshold. A species "
        "without both presences and absences among the surveys gets nodata and a row saying why.\n\n"
        "SURVEYS: a presence-absence CSV or the point layer from 'Load observations'. "
        "OUTPUT_THRESHOLDS: one CSV row per species (speciesId, species, rule, threshold, tss, "
        "sensitivity, specificity, presences, absences, note)."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterRasterLayer("PROBABILITIES", self.tr("Probability raster from Predict"))
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "RULE", self.tr("Threshold rule"), options=list(RULES), allowMultiple=False,
                defaultValue="fixed", optional=False, usesStaticStrings=True,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD", self.tr("Threshold (rule fixed)"), QgsProcessingParameterNumber.Double,
                defaultValue=0.5, minValue=0.0, maxValue=1.0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterMapLayer(
                "SURVEYS", self.tr("Presence-absence surveys (CSV or point layer; data-driven rules)"),
                types=[QgsProcessing.TypeVector], optional=True,
            )
        )  # fmt: skip
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", self.tr("Presence maps")))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_THRESHOLDS",
                self.tr("Thresholds (CSV)"),
                fileFilter="CSV files (*.csv)",
                optional=True,
            )
        )

    def execute(self, parameters, context, feedback, progress):
        from ..core.decisions.presence import presence_maps

        rule = read_rule(self, parameters, context)
        layer = self.parameterAsRasterLayer(parameters, "PROBABILITIES", context)
        if layer is None:
            raise QgsProcessingException(
                "PROBABILITIES cannot be read: give the probability raster from Predict."
            )
        probabilities = raster_layer_path(layer)
        threshold = read_number(self, parameters, "THRESHOLD", context, default=0.5)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        table = (
            self.parameterAsFileOutput(parameters, "OUTPUT_THRESHOLDS", context)
            if given(parameters, "OUTPUT_THRESHOLDS")
            else None
        )
        surveys = crs = None
        inputs = {"SURVEYS": input_file(self, parameters, context, "SURVEYS")}
        if given(parameters, "SURVEYS"):
            surveys, crs = read_surveys(self, parameters, "SURVEYS", context, progress)
        result = presence_maps(
            probabilities,
            rule,
            output=output,
            threshold=threshold,
            surveys=surveys,
            surveys_crs=crs,
            output_thresholds=table,
            progress=progress,
            input_files=inputs,
        )
        usable = sum(t.usable for t in result.thresholds)
        progress.info(
            f"{rule}: thresholds for {usable} of {len(result.thresholds)} species"
            + (f" from {result.surveys_used} surveys" if result.surveys_used else "")
        )
        return dict(result.outputs)

"""``geoplant:modelinfo``: the card of a model, readable in the log and as JSON."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from ..core.cardtext import describe_card  # the card as lines, shared with the command line
from .base import GeoPlantAlgorithm


class ModelInfoAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "modelinfo"
    DISPLAY_NAME = "Model information"
    HELP = (
        "Shows the 'geoplant' card of an ONNX model: its species, its inputs (variables or bands, "
        "patch size, normalisation) and its default grid, after checking the card against the graph. "
        "Per input it lists every variable name the engine will look for among the rasters (a cube's "
        "name template expanded; long lists cut in the log) and the preprocessing steps in order. "
        "CARD_JSON holds the card as JSON; OUTPUT_JSON optionally saves it to a file; INPUTS_JSON "
        "holds, per input, all the variable names and the steps. "
        "The contract is in docs/model-contract.md."
    )
    REQUIRES = ("onnxruntime",)

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile("MODEL", self.tr("Model (.onnx)"), extension="onnx"))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_JSON", self.tr("Card as JSON"), "JSON files (*.json)", optional=True,
                createByDefault=False,
            )
        )  # fmt: skip
        self.addOutput(QgsProcessingOutputString("CARD_JSON", self.tr("Card (JSON)")))
        self.addOutput(
            QgsProcessingOutputString("INPUTS_JSON", self.tr("Inputs: variable names and steps (JSON)"))
        )

    def execute(self, parameters, context, feedback, progress):
        model = self.parameterAsFile(parameters, "MODEL", context)
        from ..core.files import check_outputs
        from ..core.modelcard import read_model_card  # at run time: the plugin loads faster

        out = (
            self.parameterAsFileOutput(parameters, "OUTPUT_JSON", context)
            if parameters.get("OUTPUT_JSON")
            else ""
        )
        if out:  # refused before anything is read or written
            check_outputs({"OUTPUT_JSON": out}, {"MODEL": model})
        card = read_model_card(model)
        for line in describe_card(card):
            progress.info(line)
        text = card.to_json(indent=2)
        import json

        from ..core.cardtext import inputs_listing

        results = {"CARD_JSON": text, "INPUTS_JSON": json.dumps(inputs_listing(card), indent=2)}
        if out:
            from ..core.files import Publication

            with Publication(progress) as publication:
                publication.write_text(publication.temporary(out), text + "\n")
                progress.check_cancelled()
                results["OUTPUT_JSON"] = publication.publish()[0]
        return results

"""``geoplant:modelinfo``: the card of a model, readable in the log and as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
)

from .base import GeoPlantAlgorithm

if TYPE_CHECKING:  # imported at run time only: the plugin loads faster
    from ..core.modelcard import ModelCard


def _numbers(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def describe_card(card: ModelCard) -> list[str]:
    """The card as readable lines (what the log shows); long texts and lists are cut (the
    whole card is CARD_JSON)."""
    from ..core.modelcard import listed, shorten

    lines = [f"Model: {shorten(card.name) or '(no name)'}  [{card.format}]"]
    if card.description:
        lines.append(f"Description: {shorten(card.description, 2000)}")
    if card.license:
        lines.append(f"License: {shorten(card.license)}")
    if card.citation:
        lines.append(f"Citation: {shorten(card.citation, 1000)}")
    first = ", ".join(f"{shorten(s.name)} ({s.id})" for s in card.species[:5])
    more = f", ... ({len(card.species) - 5} more)" if len(card.species) > 5 else ""
    lines.append(f"Species: {len(card.species)}: {first}{more}")
    lines.append(f"Output: '{shorten(card.output.name)}', activation {card.output.activation}")
    for spec in card.inputs:
        if spec.kind == "patch":
            what = (
                f"patch {len(spec.bands)} x {spec.size} x {spec.size} px at {spec.pixel_size_m:g} m; "
                f"bands: {listed(spec.bands, 20)}"
            )
        elif spec.kind == "cube":
            what = (
                f"cube {' x '.join(map(str, spec.shape))}; {len(spec.variables)} variables: "
                f"{listed(spec.variables[:6], 6)}{', ...' if len(spec.variables) > 6 else ''}"
            )
        else:
            what = f"point, {len(spec.variables)} variables: {listed(spec.variables, 100)}"
        lines.append(f"Input '{shorten(spec.name)}': {what}")
        norm = [f"scale {spec.scale:g}"] if spec.scale != 1.0 else []
        if spec.mean:
            norm.append(f"mean [{_numbers(spec.mean)}]")
        if spec.std:
            norm.append(f"std [{_numbers(spec.std)}]")
        lines.append(
            "    normalisation: "
            + ("(x * scale - mean) / std with " + ", ".join(norm) if norm else "none (raw values)")
        )
        lines.append(
            "    nodata: "
            + (f"filled with {spec.fill:g}" if spec.fill is not None else "the cell is left nodata")
        )
    if card.grid is not None:
        lines.append(f"Default grid: {card.grid.crs}, cells of {card.grid.cell_size_m:g} m")
    else:
        lines.append("Default grid: none in the card (EPSG:3035; CELL_SIZE from the user)")
    return lines


class ModelInfoAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "modelinfo"
    DISPLAY_NAME = "Model information"
    HELP = (
        "Shows the 'geoplant' card of an ONNX model: its species, its inputs (variables or bands, "
        "patch size, normalisation) and its default grid, after checking the card against the graph. "
        "CARD_JSON holds the card as JSON; OUTPUT_JSON optionally saves it to a file. "
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
        results = {"CARD_JSON": text}
        if out:
            from ..core.files import Publication

            with Publication(progress) as publication:
                publication.write_text(publication.temporary(out), text + "\n")
                progress.check_cancelled()
                results["OUTPUT_JSON"] = publication.publish()[0]
        return results

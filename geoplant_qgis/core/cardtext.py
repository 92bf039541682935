"""A model card as readable lines: what ``geoplant:modelinfo`` logs and ``geoplant modelinfo``
prints (one text for both; the whole card is ``ModelCard.to_json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cardfields import shorten

if TYPE_CHECKING:
    from .modelcard import ModelCard


def describe_card(card: ModelCard) -> list[str]:
    """The card as readable lines; long texts and lists are cut (the whole card is its JSON)."""
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
        lines.extend(input_lines(spec))
    if card.grid is not None:
        lines.append(f"Default grid: {card.grid.crs}, cells of {card.grid.cell_size_m:g} m")
    else:
        lines.append("Default grid: none in the card (EPSG:3035; CELL_SIZE from the user)")
    return lines


#: names of an input shown in full; beyond, the first and last few and the count
SHOWN_NAMES = 24


def _names_text(names) -> str:
    names = [shorten(n, 80) for n in names]
    if len(names) <= SHOWN_NAMES:
        return ", ".join(names)
    return f"{', '.join(names[:8])}, ... ({len(names) - 12:,} more) ..., {', '.join(names[-4:])}"


def input_lines(spec) -> list[str]:
    """One input: its tensor, every variable name the engine looks for (a cube's template
    expanded; long lists cut here, whole in :func:`inputs_listing`) and its steps in order."""
    if spec.kind == "patch":
        what = f"patch {len(spec.bands)} x {spec.size} x {spec.size} px at {spec.pixel_size_m:g} m; bands"
    elif spec.kind == "cube":
        shape = " x ".join(map(str, spec.shape or ()))
        axes = f" ({' x '.join(d.name for d in spec.dimensions)})" if spec.dimensions else ""
        named = f" named '{shorten(spec.name_template)}'" if spec.name_template else ""
        what = f"cube {shape}{axes}; {len(spec.variables):,} variables{named}"
    else:
        what = f"point, {len(spec.variables)} variables"
    lines = [f"Input '{shorten(spec.name)}': {what}: {_names_text(spec.source_names)}"]
    steps = spec.steps
    if steps:
        lines.append("    preprocessing, in order:")
        lines.extend(f"      {i}. {step.text()}" for i, step in enumerate(steps, start=1))
    else:
        lines.append("    preprocessing: none (raw values)")
    if spec.fill is None:
        lines.append("    nodata: the cell is left nodata")
    return lines


def inputs_listing(card: ModelCard) -> list[dict]:
    """Per input: name, kind, every variable name looked for (in order, templates
    expanded) and its preprocessing steps in order, as JSON-ready dicts."""
    return [
        {
            "name": spec.name,
            "kind": spec.kind,
            "variables": list(spec.source_names),
            "preprocess": [step.to_dict() for step in spec.steps],
            "steps": [step.text() for step in spec.steps],
        }
        for spec in card.inputs
    ]

"""The dock's choices remembered in the project: model, cell size, grid CRS, output folder."""

from __future__ import annotations

from qgis.core import QgsProject

from ..core.bundled import default_model_path

SCOPE = "GeoPlant"


def save(state) -> None:
    project = QgsProject.instance()
    project.writeEntry(SCOPE, "model", state.model_path or "")
    project.writeEntryDouble(SCOPE, "cell_size", float(state.cell_size))
    project.writeEntry(SCOPE, "crs", state.grid_crs.authid())
    project.writeEntry(SCOPE, "output_folder", state.outputs.folder)


def read() -> tuple[str, float | None, str | None, str]:
    """(model, cell size or None, CRS or None, output folder) of the current project; the
    model is the bundled demo model when the project names none."""
    project = QgsProject.instance()
    model, has_model = project.readEntry(SCOPE, "model", "")
    cell_size, has_size = project.readDoubleEntry(SCOPE, "cell_size", 0.0)
    crs, has_crs = project.readEntry(SCOPE, "crs", "")
    folder, _ = project.readEntry(SCOPE, "output_folder", "")
    if not (has_model and model):
        model = default_model_path() or ""
    return (
        model,
        cell_size if has_size and cell_size > 0 else None,
        crs if has_crs and crs else None,
        folder or "",
    )


def save_species(ids) -> None:
    """The ticked species (their probability maps), remembered in the project."""
    QgsProject.instance().writeEntry(SCOPE, "species", ",".join(str(int(i)) for i in ids))


def read_species() -> list[int] | None:
    """The ticked species saved in the project (None when it saved none)."""
    text, found = QgsProject.instance().readEntry(SCOPE, "species", "")
    if not found:
        return None
    return [int(t) for t in text.split(",") if t.strip().lstrip("-").isdigit()]

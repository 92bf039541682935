"""Small helpers the panels share: a collapsible section, HTML escaping, blocked signals."""

from __future__ import annotations

import html
from contextlib import contextmanager

from qgis.gui import QgsCollapsibleGroupBox

ERROR_COLOUR = "#b00020"


def section(title: str, collapsed: bool = False) -> QgsCollapsibleGroupBox:
    box = QgsCollapsibleGroupBox(title)
    box.setCollapsed(collapsed)
    return box


def escape(text) -> str:
    return html.escape(str(text), quote=False)


def error_html(text) -> str:
    return f"<span style='color:{ERROR_COLOUR}'>{escape(text)}</span>"


@contextmanager
def signals_blocked(*widgets):
    """Set widgets from the state without their signals calling back into it."""
    previous = [w.blockSignals(True) for w in widgets]
    try:
        yield
    finally:
        for widget, was in zip(widgets, previous, strict=True):
            widget.blockSignals(was)

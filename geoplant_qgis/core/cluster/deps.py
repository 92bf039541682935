"""dask and distributed are optional: imported only when a scheduler is asked for."""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependencyError

#: what to install (the versions the tests pin, constraints.txt)
INSTALL_HINT = "python -m pip install 'dask[distributed]==2025.1.0' 'distributed==2025.1.0'"


def distributed() -> Any:
    """The ``distributed`` module, or MissingDependencyError saying what to install."""
    try:
        import dask  # noqa: F401
        import distributed as module
    except ImportError as error:
        raise MissingDependencyError(
            "Running on a Dask scheduler (--scheduler) needs the dask and distributed packages, "
            f"which are not installed ({error}). Install them with: {INSTALL_HINT} "
            "(into the Python that runs GeoPlant, and on every worker), or run without --scheduler "
            "on this machine."
        ) from None
    return module


__all__ = ["INSTALL_HINT", "distributed"]

"""Publish: the run's GeoTIFFs finished (overviews) and moved into place together.

The last stage of a predict: :func:`finish_and_publish` builds each writer's overviews,
one file after the other, then publishes every output and its sidecars at once through
the run's :class:`core.files.Publication` (:func:`core.geotiff.publish_all`); a failure or
a cancel before that leaves the user's files as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..geotiff import GeoTiffWriter, publish_all


def finish_and_publish(writers: Sequence[GeoTiffWriter], progress: Any) -> None:
    """Overviews of every writer, then every output published together. A cancel is
    honoured between files and at the last moment before anything is replaced."""
    # one after the other: building two GTiffs' overviews from two threads at once
    # corrupted memory with Debian 12's GDAL 3.6 (aborts in libtiff), measured
    for writer in writers:
        progress.check_cancelled()
        writer.finish()
    progress.check_cancelled()  # the last moment before anything is replaced
    publish_all(list(writers))


def discard(writers: Sequence[GeoTiffWriter]) -> None:
    """Remove every writer's temporary file (a failed or cancelled run)."""
    for writer in writers:
        writer.discard()

"""Writing outputs safely: a hidden temporary name in the destination folder, renamed at the end.

Every core writer goes through these, so a cancelled or failed run leaves nothing under
the user's name and the folder errors read the same everywhere.
"""

from __future__ import annotations

import os
import uuid

from .errors import OutputError


def output_folder(path) -> str:
    """Create the folder of the output ``path`` if needed; its absolute path."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OutputError(f"Cannot create the folder {folder}: {error.strerror or error}.") from None
    return folder


def temporary_sibling(path) -> str:
    """A hidden temporary name in the folder of ``path`` (same extension, same filesystem)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.part-{uuid.uuid4().hex[:8]}{ext}")


def write_text(path, text: str) -> str:
    """``text`` to ``path`` (UTF-8) under a temporary name, renamed when complete."""
    final = os.path.abspath(os.fspath(path))
    output_folder(final)
    tmp = temporary_sibling(final)
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, final)
    except OSError as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise OutputError(f"Cannot write {final}: {error.strerror or error}.") from None
    return final

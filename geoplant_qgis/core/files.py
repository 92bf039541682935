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


def publish_together(pairs) -> None:
    """Rename every (temporary, final) pair into place, all of them or none.

    A file already under a final name is first moved aside, and put back if a later
    rename fails (a folder made read-only mid-run, a file locked by another program):
    then the new files are removed and the user's previous ones are restored, and an
    OutputError says which name failed. Backups are deleted once all are in place.
    """
    pairs = [(os.fspath(t), os.path.abspath(os.fspath(f))) for t, f in pairs]
    placed, backups = [], []
    final = ""
    try:
        for tmp, final in pairs:
            if os.path.lexists(final):
                backup = temporary_sibling(final)
                os.replace(final, backup)
                backups.append((backup, final))
            os.replace(tmp, final)
            placed.append(final)
    except OSError as error:
        failed = final
        for new in placed:
            try:
                os.remove(new)
            except OSError:
                pass
        for backup, previous in reversed(backups):
            try:
                os.replace(backup, previous)
            except OSError:
                pass
        raise OutputError(
            f"Cannot put {failed} in place: {error.strerror or error}. Nothing was published; "
            "any previous files under the output names are as they were."
        ) from None
    for backup, _ in backups:
        try:
            os.remove(backup)
        except OSError:
            pass

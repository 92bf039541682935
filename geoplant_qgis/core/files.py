"""The user's files are sacred: temporary names, outputs published together, outputs never inputs.

Every core writer goes through this module:

- :func:`temporary_sibling` names a hidden temporary file beside the output, recognisable as
  ours (``.<name>.geoplant-<host>-<pid>-<token>.part<ext>``) so that a later run can remove
  the ones a killed run left (:func:`remove_stale`), and only those;
- :class:`Publication` is one run's set of outputs: folders it created, temporary files it
  wrote, and at the end all of them renamed into place together (:func:`publish_together`);
  a failed or cancelled run removes only what it created and leaves every previous file
  byte for byte as it was;
- :func:`check_outputs` refuses, before anything starts, an output (or one of its sidecars)
  that is an input, an input's sidecar, or another output of the same run.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Iterable, Mapping

from .errors import OutputError

#: the part of every temporary name that says "a GeoPlant run wrote this"
TAG = "geoplant"
_OWN = re.compile(
    r"^\.(?P<stem>.*)\.geoplant-(?P<host>[A-Za-z0-9_-]*)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})\."
    r"(?P<kind>part|backup|kept)(?P<ext>.*)$"
)
#: sidecars GDAL or QGIS keep beside a raster or vector file: they go with it
RASTER_SIDECARS = (".aux.xml", ".ovr", ".msk")
_VECTOR_SIBLINGS = {
    ".shp": (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".qmd"),
    ".gpkg": ("-wal", "-shm", "-journal"),
    ".sqlite": ("-wal", "-shm", "-journal"),
}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40]


#: the longest file name most file systems take (bytes)
NAME_MAX = 255


def _name(path, kind: str) -> str:
    """``.<stem>.geoplant-<host>-<pid>-<token>.<kind><ext>`` beside ``path``. When that is
    longer than a file name may be, the stem is cut (a backup's kind then becomes ``kept``:
    its final name cannot be read back from it, so :func:`remove_stale` leaves it alone)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    stem, ext = os.path.splitext(name)
    tag = f".{TAG}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    full = f".{stem}{tag}.{kind}{ext}"
    if len(os.fsencode(full)) <= NAME_MAX:
        return os.path.join(folder, full)
    kind = "kept" if kind == "backup" else kind
    room = NAME_MAX - len(os.fsencode(f".{tag}.{kind}{ext}"))
    short = os.fsencode(stem)[: max(room, 1)].decode("utf-8", "ignore")
    return os.path.join(folder, f".{short}{tag}.{kind}{ext}")


def temporary_sibling(path) -> str:
    """A hidden temporary name in the folder of ``path`` (same extension, same file system),
    recognisable as this process's: ``.<stem>.geoplant-<host>-<pid>-<token>.part<ext>``."""
    return _name(path, "part")


def is_own_temporary(name: str) -> bool:
    """True for a name :func:`temporary_sibling` (or a publish backup) made, with GDAL's
    sidecars of it (``.aux.xml``, ``.ovr``)."""
    return _OWN.match(os.path.basename(name)) is not None


def _boot_time() -> float:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: not ours to judge
    return True


def remove_stale(folder, progress=None, depth: int = 0) -> list[str]:
    """Remove the temporaries that killed GeoPlant runs on this machine left in ``folder``.

    A name is ours only when it has :func:`temporary_sibling`'s form; it is stale when it
    was made on this host by a process that no longer runs, or before the machine last
    started (a power cut). Names from other hosts (a shared file system) are left alone.
    ``depth``: also look in subfolders that deep (a patch tree's ``CD/AB``: 2).
    A stale *backup* (the user's previous file, moved aside while a run published) is put
    back under its name when that name is free, never deleted. Returns what was removed or
    restored.
    """
    folder = os.path.abspath(os.fspath(folder))
    done: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return done
    host, boot = _host(), _boot_time()
    for entry in entries:
        match = _OWN.match(entry.name)
        if match is None and depth > 0:
            try:
                if entry.is_dir(follow_symlinks=False):
                    done += remove_stale(entry.path, None, depth - 1)
            except OSError:
                pass
            continue
        if match is None or match["host"] != host or match["kind"] == "kept":
            continue
        try:
            if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                continue
            stale = not _alive(int(match["pid"])) or entry.stat(follow_symlinks=False).st_mtime < boot
        except OSError:
            continue
        if not stale:
            continue
        try:
            if match["kind"] == "backup":
                final = os.path.join(folder, match["stem"] + match["ext"])
                if os.path.lexists(final):
                    continue  # the new file was published: the user decides about the old one
                os.replace(entry.path, final)
            else:
                os.remove(entry.path)
            done.append(entry.path)
        except OSError:
            continue
    if done and progress is not None:
        progress.info(
            f"Removed {len(done)} temporary file(s) left in {folder} by an interrupted earlier run."
        )
    return done


def _folder_error(folder: str, error: OSError) -> OutputError:
    return OutputError(
        f"Cannot create the folder {folder}: {error.strerror or error}. Choose a folder you can write to."
    )


def output_folder(path, created: list | None = None) -> str:
    """Create the folder of the output ``path`` if needed; its absolute path. Folders made
    here are appended to ``created`` (outermost first), so that a failed run removes them."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    missing = []
    probe = folder
    while probe and not os.path.isdir(probe):
        missing.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for made in reversed(missing):
        try:
            os.mkdir(made)
        except FileExistsError:
            if not os.path.isdir(made):
                raise OutputError(f"Cannot create the folder {made}: a file has that name.") from None
            continue
        except OSError as error:
            raise _folder_error(made, error) from None
        if created is not None:
            created.append(made)
    return folder


def _writable_folder(folder: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"Cannot write in the folder {folder}: permission denied. Choose another output folder."
        )


def write_text(path, text: str) -> str:
    """``text`` to ``path`` (UTF-8) under a temporary name, renamed when complete."""
    with Publication() as publication:
        tmp = publication.temporary(path)
        publication.write_text(tmp, text)
        publication.publish()
    return os.path.abspath(os.fspath(path))


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def publish_together(pairs) -> None:
    """Rename every (temporary, final) pair into place, all of them or none.

    A file already under a final name is first moved aside (a recognisable backup name),
    and put back if a later rename fails (a folder made read-only mid-run, a file locked by
    another program): then the new files are removed and the user's previous ones are
    restored, and an OutputError says which name failed. Backups are deleted once all are
    in place. The sidecars of a replaced file (:func:`sidecars_of`: a raster's ``.aux.xml``
    and ``.ovr`` with the old content's statistics and overviews, a GeoPackage's ``-wal``
    and ``-shm``) go with it, unless the run writes them too.
    """
    pairs = [(os.fspath(t), os.path.abspath(os.fspath(f))) for t, f in pairs]
    finals = {f for _, f in pairs}
    placed, backups = [], []
    final = ""
    try:
        for tmp, final in pairs:
            moving = [final] + [s for s in sidecars_of(final) if s not in finals]
            for old in moving:
                if os.path.lexists(old):
                    backup = _name(old, "backup")
                    os.replace(old, backup)
                    backups.append((backup, old))
            os.replace(tmp, final)
            placed.append(final)
    except OSError as error:
        failed = final
        for new in placed:
            _remove(new)
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
        _remove(backup)


class Publication:
    """One run's outputs: temporary files and the folders made for them, published together.

    ``temporary(final)`` registers an output and gives the name to write it under;
    ``publish()`` renames them all into place (:func:`publish_together`); leaving the
    ``with`` block without publishing (an error, a cancel) removes every temporary file
    and every folder this run created, if it is empty: the files that were there before
    are untouched.
    """

    def __init__(self, progress=None):
        self.progress = progress
        self.pairs: list[tuple[str, str]] = []
        self.created: list[str] = []
        self._cleaned: set[str] = set()
        self.published = False

    def folder(self, final) -> str:
        """Create the folder of ``final`` (recorded), clean its stale temporaries, check it is
        writable; its absolute path."""
        folder = output_folder(final, self.created)
        if folder not in self._cleaned:
            self._cleaned.add(folder)
            remove_stale(folder, self.progress)
            _writable_folder(folder)
        return folder

    def temporary(self, final) -> str:
        """The temporary name to write ``final`` under (its folder made if needed)."""
        final = os.path.abspath(os.fspath(final))
        if os.path.isdir(final):
            raise OutputError(f"The output {final} is a folder: give the name of a file to write.")
        if len(os.fsencode(os.path.basename(final))) > NAME_MAX:
            raise OutputError(
                f"The output name {os.path.basename(final)[:60]}... is too long "
                f"({len(os.fsencode(os.path.basename(final)))} bytes; file systems take {NAME_MAX}): "
                "choose a shorter name."
            )
        if any(final == f for _, f in self.pairs):
            raise OutputError(f"{final} is given for two outputs of this run; give each its own file.")
        self.folder(final)
        tmp = temporary_sibling(final)
        self.pairs.append((tmp, final))
        return tmp

    def add(self, tmp, final) -> None:
        """A temporary file written by someone else (e.g. a GDAL writer), to publish too."""
        self.pairs.append((os.path.abspath(os.fspath(tmp)), os.path.abspath(os.fspath(final))))

    def write_text(self, tmp, text: str) -> None:
        """``text`` (UTF-8) to ``tmp``; an OutputError names the output, not the hidden name."""
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except OSError as error:
            final = dict(self.pairs).get(os.path.abspath(os.fspath(tmp)), tmp)
            raise OutputError(f"Cannot write {final}: {error.strerror or error}.") from None

    def publish(self) -> list[str]:
        publish_together(self.pairs)
        self.published = True
        return [f for _, f in self.pairs]

    def discard(self) -> None:
        """Remove every temporary file (with GDAL's sidecars of it) and the folders this run
        created that are left empty, innermost first."""
        if not self.published:
            for tmp, _ in self.pairs:
                for path in (tmp, *(tmp + s for s in RASTER_SIDECARS)):
                    _remove(path)
        for folder in sorted(set(self.created), key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        self.created = []

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.published:
            self.discard()


# -- outputs that are inputs ----------------------------------------------------------


def dataset_file(source) -> str | None:
    """The local file behind a GDAL/OGR dataset name or a QGIS layer source, or None
    (``/vsicurl/``, a database): ``GPKG:f.gpkg:table``, ``f.gpkg|layername=t``,
    ``/vsizip/a.zip/b.tif``, ``NETCDF:"f.nc":var``."""
    if source is None:
        return None
    text = os.fspath(source) if not isinstance(source, str) else source
    text = text.split("|", 1)[0].strip()
    if text.startswith("/vsi"):
        match = re.match(r"^/vsi(?:zip|tar|gzip|7z|rar)/(.+?\.(?:zip|tar|tgz|gz|7z|rar))(?:/|$)", text, re.I)
        return os.path.abspath(match.group(1)) if match else None
    match = re.match(r'^[A-Za-z0-9_]+:"?(.+?)"?(?::[^:/\\]+)?$', text)
    if match and not os.path.exists(text) and os.path.exists(match.group(1)):
        return os.path.abspath(match.group(1))
    if "://" in text:
        return None
    return os.path.abspath(text)


def sidecars_of(path) -> list[str]:
    """Files that travel with ``path``: GDAL's ``.aux.xml``/``.ovr``/``.msk``, a shapefile's
    siblings, a GeoPackage's journal files."""
    path = os.path.abspath(os.fspath(path))
    stem, ext = os.path.splitext(path)
    out = [path + s for s in RASTER_SIDECARS]
    out += [stem + s for s in _VECTOR_SIBLINGS.get(ext.lower(), ()) if s.startswith(".")]
    out += [path + s for s in _VECTOR_SIBLINGS.get(ext.lower(), ()) if s.startswith("-")]
    return out


def _identity(path: str):
    """What makes two names the same file: (device, inode) when it exists, else the real
    path case-folded where the file system ignores case."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        pass
    # not there yet: the real path of its folder + the name (folded when the folder ignores case)
    folder, name = os.path.split(real)
    try:
        st = os.stat(folder)
        folded = name.lower() if _ignores_case(folder) else name
        return ("name", st.st_dev, st.st_ino, folded)
    except OSError:
        return ("path", os.path.normcase(real))


def _ignores_case(folder: str) -> bool:
    """True when the file system of ``folder`` ignores case (its own name in the other case
    names the same folder)."""
    parent, name = os.path.split(folder)
    other = os.path.join(parent, name.swapcase())
    if other == folder:
        return False
    try:
        return os.path.samefile(folder, other)
    except OSError:
        return False


def check_outputs(outputs: Mapping[str, object], inputs: Mapping[str, object] | None = None) -> None:
    """Refuse a run whose outputs overlap its inputs or each other, before anything starts.

    ``outputs``: {label: path or list of paths}, the first path of each being the output and
    the others its sidecars; ``inputs``: {label: path, dataset name or list of them}; each
    input's sidecars (:func:`sidecars_of`) count as the input. Names are compared as files:
    symbolic and hard links, ``.``/``..`` and, where the file system ignores it, case.
    """
    seen: dict[object, tuple[str, str]] = {}
    for label, value in (inputs or {}).items():
        for source in _as_list(value):
            path = dataset_file(source)
            if path is None:
                continue
            seen.setdefault(_identity(path), (label, path))
            for extra in sidecars_of(path):  # even absent: GDAL or SQLite may create them
                seen.setdefault(_identity(extra), (f"{label} (its sidecar)", extra))
    for label, value in outputs.items():
        for i, target in enumerate(_as_list(value)):
            path = os.path.abspath(os.fspath(target))
            key = _identity(path)
            what = label if i == 0 else f"{label} (its sidecar {os.path.basename(path)})"
            if key in seen:
                other, other_path = seen[key]
                raise OutputError(
                    f"{what} ({path}) is the same file as {other} ({other_path}): the run would "
                    f"overwrite it. Choose another name for {label}."
                )
            seen[key] = (what, path)


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [value]
    if isinstance(value, Iterable):
        return [v for v in value if v is not None and str(v) != ""]
    return [value]


__all__ = [
    "Publication",
    "check_outputs",
    "dataset_file",
    "is_own_temporary",
    "output_folder",
    "publish_together",
    "remove_stale",
    "sidecars_of",
    "temporary_sibling",
    "write_text",
]

"""The driver of a cluster run: tiles to Dask tasks, faults, resume, assembly, publish.

:func:`run_on_cluster` (``--scheduler``):

1. the tiling (:mod:`.tiles`) and the request's fingerprint; the work folder and its
   manifest (:mod:`.manifest`): tiles already finished by an interrupted run with the
   same arguments, whose files are there with their recorded checksum, are kept;
2. one task per remaining tile (:func:`.worker.run_tile`) on the scheduler; as each
   finishes its checksums go into the manifest (written atomically). A worker that dies
   has its tasks rerun elsewhere by the scheduler (its ``allowed-failures``); a task that
   raises is retried :data:`RETRIES` times, then its error ends the run;
3. the outputs assembled from the tiles and published together (:mod:`.assemble`), the
   work folder removed.

A cancel (progress, SIGTERM through :mod:`core.signals`) or an error stops the tasks and
leaves the user's files as they were; the finished tiles stay in the work folder for the
next run with the same arguments.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import CancelledError, InputDataError
from ..files import remove_stale
from ..geotiff import check_disk_space, estimate_bytes
from ..progress import as_progress
from .deps import distributed
from .manifest import Manifest, fingerprint, fingerprint_digest, other_work_folders, work_folder
from .tiles import layout

if TYPE_CHECKING:
    from ..predict.request import PredictRequest
    from ..predict.runner import PredictResult

#: a task that raises (not a lost worker) is tried this many more times
RETRIES = 1
#: how often the driver looks at the cancel flag while tasks run, seconds
POLL_SECONDS = 0.2
#: environment variable: a file each task appends "start|done <tile> <pid>" to (tests, bench)
TILE_LOG_ENV = "GEOPLANT_CLUSTER_TILE_LOG"


def parse_scheduler(scheduler: str) -> tuple[str, Any]:
    """("local", N) for "local:N", ("address", text) for "tcp://host:port" (any
    "scheme://" distributed knows: tls://, ws://...); InputDataError otherwise."""
    text = str(scheduler or "").strip()
    if text.startswith("local:") or text == "local":
        count = text.partition(":")[2] or "0"
        if not count.isdigit() or not 1 <= int(count) <= 1024:
            raise InputDataError(
                f"The scheduler {scheduler!r} asks for a local cluster but not a number of workers "
                "from 1 to 1024: give local:N, e.g. local:2."
            )
        return "local", int(count)
    if "://" in text and text.split("://", 1)[1]:
        return "address", text
    raise InputDataError(
        f"The scheduler {scheduler!r} is neither tcp://host:port (a running dask scheduler) nor "
        "local:N (N worker processes on this machine)."
    )


@contextlib.contextmanager
def connect(scheduler: str, progress: Any) -> Iterator[Any]:
    """A ``distributed.Client`` on ``scheduler``; a local cluster is closed on exit."""
    kind, value = parse_scheduler(scheduler)
    dist = distributed()
    if kind == "local":
        import logging

        cluster = dist.LocalCluster(
            n_workers=value,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        try:
            with dist.Client(cluster) as client:
                progress.info(f"Dask: a local cluster of {value} worker process(es).")
                yield client
        finally:
            cluster.close()
        return
    try:
        client = dist.Client(value, timeout="30s")
    except OSError as error:
        raise InputDataError(f"Cannot reach the dask scheduler at {value}: {error}") from None
    with client:
        workers = len(client.scheduler_info().get("workers", {}))
        progress.info(f"Dask: the scheduler at {value}, {workers} worker(s) now.")
        yield client


def run_on_cluster(
    request: PredictRequest, scheduler: str, progress: Any = None, tile_cells: int | None = None
) -> PredictResult:
    """Run ``request`` as tiles on a Dask scheduler and publish outputs identical to
    :func:`core.predict.run`'s. ``scheduler``: "tcp://host:port" or "local:N";
    ``tile_cells``: cells per tile (default :data:`.tiles.DEFAULT_TILE_CELLS`)."""
    from ..predict.runner import PredictResult, check_some_valid
    from .assemble import assemble

    progress = as_progress(progress)
    parse_scheduler(scheduler)  # a wrong address is refused before anything else
    distributed()
    started = time.perf_counter()
    for warning in request.warnings:
        progress.warning(warning)
    plan = layout(request, tile_cells)
    print_ = fingerprint(request, plan)
    digest = fingerprint_digest(print_)
    folder = work_folder(request, digest)
    _check_space(request, folder)
    manifest = Manifest.open(folder, print_, digest)
    remove_stale(folder)  # temporaries of tasks killed on this machine
    for other in other_work_folders(request, folder):
        progress.warning(
            f"{other} holds the tiles of an interrupted run with other arguments; delete it if you "
            "will not run that request again."
        )
    kinds = list(request.output_specs())
    todo = []
    for tile in plan.tiles:
        if not manifest.finished(tile, kinds):
            manifest.forget(tile)
            todo.append(tile)
    kept = len(plan.tiles) - len(todo)
    progress.info(
        f"Grid: {request.grid.width} x {request.grid.height} cells in {len(plan.tiles)} tile(s) of up to "
        f"{plan.tile_rows} x {plan.tile_cols}; work folder {folder}."
        + (f" Resuming: {kept} tile(s) already finished, {len(todo)} to compute." if kept else "")
    )
    manifest.save()
    if todo:
        _compute(request, todo, manifest, digest, scheduler, progress, kept, len(plan.tiles))
    valid = sum(int(manifest.tiles[t.key].get("valid", 0)) for t in plan.tiles)
    check_some_valid(request, valid)
    progress.info("Assembling the tiles into the outputs.")
    assemble(request, plan.tiles, folder, progress)
    shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - started
    result = PredictResult.of(request, valid, seconds)
    cells = result.cells
    progress.info(
        f"Predicted {cells:,} cells ({valid:,} valid) on the cluster: {len(todo)} tile(s) computed, "
        f"{kept} reused, in {seconds:.1f} s: {result.cells_per_second:,.0f} cells/s."
    )
    return result


def _check_space(request: PredictRequest, folder: str) -> None:
    """The outputs (overviews included) and the tiles (without) must fit together."""
    grid = request.grid
    specs = request.output_specs()
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    check_disk_space(
        [(s.path, estimate_bytes(grid.width, grid.height, s.count, s.dtype)) for s in specs.values()]
        + [
            (
                os.path.join(os.path.dirname(folder), f"tiles-{k}.tif"),
                estimate_bytes(grid.width, grid.height, s.count, s.dtype, overviews=False),
            )
            for k, s in specs.items()
        ]
    )


def _compute(
    request: PredictRequest,
    todo: list,
    manifest: Manifest,
    digest: str,
    scheduler: str,
    progress: Any,
    kept: int,
    total: int,
) -> None:
    """The tasks of ``todo`` on the scheduler, recorded in ``manifest`` as they finish."""
    from .worker import run_tile

    dist = distributed()
    log = os.environ.get(TILE_LOG_ENV) or None
    by_key = {t.key: t for t in todo}
    with connect(scheduler, progress) as client:
        shared = client.scatter(request, broadcast=True)
        futures = [
            client.submit(
                run_tile,
                shared,
                tile,
                manifest.folder,
                digest,
                log,
                key=f"geoplant-tile-{digest[:12]}-{tile.key}",
                retries=RETRIES,
                pure=False,
            )
            for tile in todo
        ]
        pending = dist.as_completed(futures, with_results=False)
        finished = kept
        try:
            while not pending.is_empty():
                progress.check_cancelled()
                batch = pending.next_batch(block=False)
                if not batch:
                    time.sleep(POLL_SECONDS)
                    continue
                for future in batch:
                    done = future.result()  # a task's error (after its retries) ends the run
                    manifest.record(by_key[done["key"]], done["files"], done["valid"])
                    finished += 1
                    progress.set_progress(90.0 * finished / total)
            progress.check_cancelled()
        except CancelledError as error:
            client.cancel(futures, force=True)
            raise CancelledError(
                f"{error} The {finished} finished tile(s) are kept in {manifest.folder}: run again with "
                "the same arguments to resume, or delete that folder."
            ) from None
        except BaseException:
            client.cancel(futures, force=True)
            raise


__all__ = ["RETRIES", "TILE_LOG_ENV", "connect", "parse_scheduler", "run_on_cluster"]

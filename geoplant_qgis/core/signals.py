"""Termination signals as cancellation: SIGTERM, SIGHUP or SIGQUIT stop a run at its next check.

A batch scheduler, ``timeout`` or ``kill`` ends a process with SIGTERM; by default Python
dies on the spot and leaves its temporary files. Inside :func:`cancel_on_signals` (the
Processing algorithms and the command line wrap their runs in it) the first such signal
only asks the run to stop: :meth:`Progress.check_cancelled` raises ``CancelledError``,
every writer removes what it created, and the process then ends with an error status. A
second signal ends the process at once, as it would have without us.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

_SIGNALS = tuple(
    s for s in (getattr(signal, name, None) for name in ("SIGTERM", "SIGHUP", "SIGQUIT")) if s is not None
)
_requested: str | None = None


def requested() -> str | None:
    """The name of the termination signal received inside :func:`cancel_on_signals`, or None."""
    return _requested


def _handler(previous: dict, on_signal):
    def handle(signum, frame):
        global _requested
        if _requested is not None:  # the second one: behave as if we were not here
            signal.signal(signum, previous.get(signum, signal.SIG_DFL) or signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        _requested = signal.Signals(signum).name
        if on_signal is not None:
            with contextlib.suppress(Exception):
                on_signal()

    return handle


@contextlib.contextmanager
def cancel_on_signals(on_signal=None):
    """Within the block, SIGTERM/SIGHUP/SIGQUIT request cancellation (``on_signal()`` is called too,
    e.g. ``feedback.cancel``). Only the main thread can install handlers; elsewhere (an
    algorithm run in a QGIS task) the block runs unchanged."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict = {}
    handle = _handler(previous, on_signal)
    _requested = None
    try:
        for signum in _SIGNALS:
            try:
                previous[signum] = signal.signal(signum, handle)
            except (ValueError, OSError):
                pass
        yield
    finally:
        for signum, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, old if old is not None else signal.SIG_DFL)
        _requested = None

"""How core code reports progress and learns about cancellation.

Core functions take an optional ``progress`` argument: anything with the methods of
:class:`Progress`. The Processing adapter wraps a ``QgsProcessingFeedback``; scripts
can pass :class:`PrintProgress` or nothing.
"""

from __future__ import annotations

import sys
import warnings

from . import signals
from .errors import CancelledError


class Progress:
    """No-op progress sink; subclass and override what you need."""

    def set_progress(self, percent: float) -> None:  # 0..100
        pass

    def is_cancelled(self) -> bool:
        return False

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def check_cancelled(self) -> None:
        """Raise :class:`CancelledError` when the user asked to stop, or a termination signal
        came (:mod:`.signals`)."""
        signal_name = signals.requested()
        if signal_name is not None:
            raise CancelledError(
                f"Stopped by {signal_name}: nothing was published, and files that were there before "
                "are as they were."
            )
        if self.is_cancelled():
            raise CancelledError()


class PrintProgress(Progress):
    """Progress for scripts: messages to stderr."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr

    def info(self, message: str) -> None:
        print(message, file=self.stream)

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=self.stream)


class ScaledProgress:
    """A sub-step's progress mapped to ``start .. start + span`` percent of ``progress``;
    everything else (messages, cancellation) passes through."""

    def __init__(self, progress: Progress, start: float, span: float):
        self.progress, self.start, self.span = progress, start, span

    def set_progress(self, percent: float) -> None:
        self.progress.set_progress(self.start + self.span * percent / 100.0)

    def __getattr__(self, name):
        return getattr(self.progress, name)


def as_progress(progress: Progress | None) -> Progress:
    return progress if progress is not None else Progress()


def report_warnings(caught: list[warnings.WarningMessage], progress: Progress) -> None:
    """Python warnings as one plain line each (message only, repeated ones once)."""
    seen = set()
    for item in caught:
        text = str(item.message).strip().splitlines()[0] if str(item.message).strip() else ""
        if not text or text in seen or issubclass(item.category, DeprecationWarning | ResourceWarning):
            continue
        seen.add(text)
        progress.warning(text)

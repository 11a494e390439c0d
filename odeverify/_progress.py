"""Progress of long work: the events :func:`~odeverify.check_gradients` and :func:`~odeverify.fit` report,
and the one-line terminal display the command line draws from them.

A ``progress`` argument is any callable taking one :class:`ProgressEvent`; what it does with it (a bar,
a log line, nothing) is up to the caller. This module imports nothing heavy, so the command line can use
it before NumPy, SciPy or SymPy are loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import InvalidTypeError

__all__ = ["ProgressEvent", "TerminalProgress", "check_progress"]

#: what an event says about its item
STATUSES = ("start", "done", "skipped", "failed")


@dataclass(frozen=True)
class ProgressEvent:
    """One step of long work, as passed to a ``progress`` callable.

    Attributes
    ----------
    stage : str
        ``"candidate"`` (the gradient under test being computed), ``"reference"`` (one reference),
        ``"diagnose"`` (a failed check being diagnosed) or ``"fit"`` (one training step).
    name : str
        What is being worked on, e.g. ``"finite differences"`` or ``"adam"``.
    index : int
        0-based position of the item within its stage.
    total : int
        Number of items in the stage (references tried, training steps).
    status : str
        ``"start"``, ``"done"``, ``"skipped"`` or ``"failed"``.
    detail : str
        Why an item was skipped or failed, or the loss after a training step.
    seconds : float
        Wall time of the item, for ``"done"`` and ``"failed"`` (0 otherwise).
    """

    stage: str
    name: str
    index: int
    total: int
    status: str
    detail: str = ""
    seconds: float = 0.0

    def __repr__(self):
        return f"<ProgressEvent {self.stage} {self.index + 1}/{self.total} {self.name}: {self.status}>"


def check_progress(progress):
    """``progress`` validated: None or a callable taking a :class:`ProgressEvent`."""
    if progress is not None and not callable(progress):
        raise InvalidTypeError(
            f"progress must be None or a callable progress(event) taking an odeverify.ProgressEvent, "
            f"got {type(progress).__name__} {progress!r:.40}; e.g. progress=print"
        )
    return progress


class _Timer:
    """Sends an item's ``start`` and then its ``done``/``failed`` event with the elapsed time."""

    def __init__(self, progress, stage, name, index, total):
        self.progress, self.event = progress, dict(stage=stage, name=name, index=index, total=total)
        self.start = time.perf_counter()
        if progress is not None:
            progress(ProgressEvent(status="start", **self.event))

    def end(self, status="done", detail=""):
        if self.progress is not None:
            seconds = time.perf_counter() - self.start
            self.progress(ProgressEvent(status=status, detail=detail, seconds=seconds, **self.event))


def _columns(stream):
    """The width of the terminal ``stream`` is drawn on: 0 when it reports none, None when it has no file
    descriptor to ask (tqdm then draws unbounded, as on any stream it cannot measure)."""
    import os

    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


def tqdm_size(stream):
    """tqdm's size keywords for ``stream``: its own width, or 80 × 24 where the terminal reports a size of 0.

    A terminal that reports no size (a pty never sized: docker exec, some CI runners) makes tqdm draw
    nothing at all (0 columns, and no row to draw on).
    """
    if _columns(stream) != 0:
        return {"dynamic_ncols": True}
    return {"dynamic_ncols": False, "ncols": 80, "nrows": 24}


class TerminalProgress:
    """A one-line progress display on a terminal stream (the command line's ``stderr``).

    Uses ``tqdm`` when it is installed (``pip install odeverify[progress]``), else rewrites one plain line
    with carriage returns. :meth:`close` erases it, so that the output after it starts on a clean line.

    Parameters
    ----------
    stream : text stream
        Where to draw, normally ``sys.stderr``; :meth:`for_stream` gives None when it is not a terminal.
    prefix : str
        Shown before every line, e.g. ``"odeverify check"``.
    """

    def __init__(self, stream, prefix):
        self.stream, self.prefix = stream, prefix
        self._bar = None
        self._stage = None
        self._width = 0
        try:
            from tqdm import tqdm
        except ImportError:  # optional: the plain line then
            self._tqdm = None
        else:
            self._tqdm = tqdm

    @classmethod
    def for_stream(cls, stream, prefix):
        """A display on ``stream`` when it is a terminal, else None (nothing is shown when output is piped)."""
        isatty = getattr(stream, "isatty", None)
        return cls(stream, prefix) if isatty is not None and isatty() else None

    def __call__(self, event: ProgressEvent):
        text = f"{event.stage} {event.index + 1}/{event.total}: {event.name}"
        if event.status != "start":
            text += f" {event.status}" + (f" ({event.detail})" if event.detail else "")
        if self._tqdm is not None:
            self._draw_tqdm(event, text)
        else:
            self._draw_plain(f"{self.prefix}: {text}" + (" …" if event.status == "start" else ""))

    def _draw_tqdm(self, event, text):
        if self._bar is None or self._stage != event.stage:
            self._close_bar()
            self._stage = event.stage
            self._bar = self._tqdm(total=event.total, file=self.stream, leave=False, desc=self.prefix,
                                   **tqdm_size(self.stream))
        self._bar.set_postfix_str(text[:60], refresh=False)
        self._bar.n = event.index + (event.status != "start")
        self._bar.refresh()

    def _draw_plain(self, line):
        columns = 79
        line = line if len(line) <= columns else line[: columns - 1] + "…"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self):
        """Erase the display."""
        self._close_bar()
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

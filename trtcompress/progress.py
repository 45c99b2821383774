"""Progress of long work (calibration, fine-tuning, benchmarks, compare, export, engine builds) on stderr.

On a terminal a :class:`Progress` redraws one line in place (``\\r``: count/total, percent, rate,
ETA), at most every 0.1 s. Anywhere else (a log file, a CI job, a pipe) it prints plain lines at a
bounded rate: one when the first step is done (with a rate and an ETA to show), one each time
another quarter of the total is done (a second or more after the line before), one every
``interval`` seconds (10 by default) in between, and one at the end; a log then grows by a handful
of lines per task, never one per step. Work that fails before its first step adds no line: the
error is the one line a bad input gets. :func:`task` is a start and an end line with the elapsed
time, for work without steps (an export, an engine build); :func:`note` prints a line without
tearing a bar that is being drawn (the job's log goes through it).

Output goes to stderr, so stdout stays clean for ``--json``. :func:`configured` switches every
progress line off (the CLI's ``--quiet``) or sends them elsewhere, for the block it wraps.
No dependency: tqdm is not needed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time
from typing import Any, Callable, Iterator, TextIO

__all__ = ["Progress", "configured", "enabled", "end_all", "known_length", "note", "task"]

_REDRAW = 0.1  # seconds between redraws on a terminal
_QUARTERS = 4  # plain lines at each quarter of a known total...
_MIN_GAP = 1.0  # ...at least this many seconds after the line before (fast work: start and end only)


@dataclasses.dataclass(frozen=True)
class _Settings:
    enabled: bool = True
    stream: TextIO | None = None  # None: sys.stderr when a line is written (follows pytest/redirects)
    interval: float = 10.0  # plain mode: at most this long without a line


_settings = _Settings()
_active: list["Progress"] = []  # bars being drawn on a terminal, innermost last


@contextlib.contextmanager
def configured(enabled: bool | None = None, stream: TextIO | None = None, interval: float | None = None) -> Iterator[None]:
    """Within the block, progress is on or off (``enabled``), written to ``stream``, with plain
    lines at most ``interval`` seconds apart; arguments left None keep the current setting."""
    global _settings
    before = _settings
    changes = {k: v for k, v in (("enabled", enabled), ("stream", stream), ("interval", interval)) if v is not None}
    _settings = dataclasses.replace(before, **changes)
    try:
        yield
    finally:
        _settings = before


def end_all() -> None:
    """End every bar still being drawn as stopped (work that raised past its bar), so what is
    printed next, an error, starts on a line of its own."""
    while _active:
        _active[-1].close(failed=True)


def enabled() -> bool:
    """Whether progress lines are shown (False under ``--quiet``)."""
    return _settings.enabled


def known_length(source: Any) -> int | None:
    """``len(source)`` when it is known without a pass over the data (a total for a bar), else None."""
    if getattr(source, "length_known", True) is False:
        return None
    try:
        return len(source)
    except TypeError:
        return None


def _stream() -> TextIO:
    return _settings.stream or sys.stderr


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` is on (COLUMNS wins, as for shutil); 80 when unknown."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return 80


def _write(stream: TextIO, text: str) -> bool:
    """Write and flush; False when the stream is gone (a closed pipe: nothing left to show)."""
    try:
        stream.write(text)
        stream.flush()
        return True
    except (OSError, ValueError):
        return False


def note(message: str) -> None:
    """One line of the work's log, on stderr; a bar being drawn is cleared first and redrawn after."""
    if not _settings.enabled:
        return
    bar = _active[-1] if _active else None
    if bar is not None:
        bar._clear()
    _write(_stream(), message + "\n")
    if bar is not None:
        bar._draw(force=True)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _rate(n: float, seconds: float, unit: str) -> str:
    if n <= 0 or seconds <= 0:
        return ""
    per_s = n / seconds
    return f"{per_s:.1f} {unit}/s" if per_s >= 1 else f"{seconds / n:.1f} s/{unit}"


class Progress:
    """Count steps of one piece of work: ``with Progress("calibrating", total=40, unit="batch") as p: ... p.update(1, samples=8)``.

    ``total`` None: no percent or ETA. ``initial``: steps already done (a resumed run); the rate
    counts only the steps done here. ``enabled`` False (or :func:`configured` off) shows nothing.
    ``stream`` (default: stderr) and ``clock`` are for tests.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "step", *, initial: int = 0, enabled: bool = True,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.desc, self.total, self.unit = desc, total, unit
        self.n = self._initial = initial
        self.enabled = enabled and _settings.enabled
        self.stream = stream or _stream()
        self.tty = self.enabled and _isatty(self.stream)
        self.interval = _settings.interval
        self._clock = clock
        self._start = self._last = clock()
        self._info: dict[str, Any] = {}
        self._drawn = 0  # characters of the line drawn last on a terminal
        self._lines = 0  # plain lines printed
        self._quarter = self._quarter_of(initial)
        self._closed = False
        if not self.enabled:
            return
        if self.tty:
            _active.append(self)
            self._draw(force=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.close(failed=kind is not None)

    def update(self, n: int = 1, **info: Any) -> None:
        """``n`` more steps done; ``info`` (e.g. ``loss=0.12``) is shown after the counts."""
        self.n += n
        self._info.update(info)
        if not self.enabled or self._closed:
            return
        if self.tty:
            self._draw()
            return
        now = self._clock()
        quarter = self._quarter_of(self.n)
        first = self._lines == 0 and (self.total is None or self.n < self.total)
        if first or (quarter > self._quarter and now - self._last >= _MIN_GAP) or now - self._last >= self.interval:
            self._quarter = quarter
            self._line(self._status())

    def close(self, failed: bool = False) -> None:
        """The end line (``done``, or ``stopped`` when the work failed); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self in _active:
            _active.remove(self)
        if not self.enabled:
            return
        elapsed = self._clock() - self._start
        done = self.n - self._initial
        rate = _rate(done, elapsed, self.unit)
        text = f"{self.desc}: {'stopped at' if failed else 'done,'} {self._count()} in {_duration(elapsed)}" + (f" ({rate})" if rate else "") + self._extra()
        if self.tty:
            self._draw(text=text, force=True)
            _write(self.stream, "\n")
        elif self._lines or not failed:
            self._line(text)

    # -- formatting

    def _quarter_of(self, n: int) -> int:
        # the last quarter's line is the end line
        return min(_QUARTERS - 1, n * _QUARTERS // self.total) if self.total else 0

    def _count(self) -> str:
        return f"{self.n}/{self.total} {self.unit}" if self.total is not None else f"{self.n} {self.unit}"

    def _extra(self) -> str:
        return "".join(f", {k}={_fmt(v)}" for k, v in self._info.items())

    def _status(self) -> str:
        elapsed = self._clock() - self._start
        done = self.n - self._initial
        parts = [self._count()]
        if self.total:
            parts.append(f"{100 * self.n / self.total:.0f}%")
        rate = _rate(done, elapsed, self.unit)
        if rate:
            parts.append(rate)
        if self.total and done > 0 and self.n < self.total:
            parts.append(f"ETA {_duration(elapsed / done * (self.total - self.n))}")
        return f"{self.desc}: " + ", ".join(parts) + self._extra()

    # -- output

    def _line(self, text: str) -> None:
        self._last = self._clock()
        self._lines += 1
        if not _write(self.stream, text + "\n"):
            self.enabled = False

    def _draw(self, text: str | None = None, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < _REDRAW:
            return
        self._last = now
        text = text if text is not None else self._status()
        width = _columns(self.stream) - 1
        text = text[:width]  # a wrapped line could not be redrawn in place
        # pad over the longer line drawn before instead of an escape sequence (TERM=dumb has none)
        if not _write(self.stream, "\r" + text.ljust(self._drawn)):
            self.enabled = False
        self._drawn = len(text)

    def _clear(self) -> None:
        if self.enabled and self.tty and self._drawn:
            _write(self.stream, "\r" + " " * self._drawn + "\r")
            self._drawn = 0


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@contextlib.contextmanager
def task(desc: str, enabled: bool = True) -> Iterator[None]:
    """``desc ...`` when the work starts and ``desc: done in 3.2 s`` when it ends (a failure says
    nothing more: its error follows)."""
    show = enabled and _settings.enabled
    if show:
        note(f"{desc} ...")
    start = time.monotonic()
    yield
    if show:
        note(f"{desc}: done in {_duration(time.monotonic() - start)}")

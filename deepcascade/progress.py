"""Progress for people and for files: one call for every long loop.

On an interactive terminal :func:`progress` is a tqdm bar. Anywhere else (output sent to a file, ``nohup``, a
batch job, CI) a bar's carriage-return frames would fill the log with redrawn lines, so it prints instead one
plain status line every ``N`` seconds (``desc: 120/500 img (24%), 3.1 img/s, 0:38 elapsed, ~2:02 left``) and a
last one when the loop ends, if it printed any: a loop shorter than ``N`` seconds writes nothing. ``N`` is
``$DEEPCASCADE_PROGRESS_EVERY`` (seconds, default 30; 0 turns the lines off), also set by the CLI's
``--progress-every``.

The call takes tqdm's arguments (``total``, ``desc``, ``unit``, ``initial``, ``disable``, ``leave``, an
iterable), so a tqdm call site changes by its name only.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "DEEPCASCADE_PROGRESS_EVERY"
DEFAULT_EVERY = 30.0


def every_seconds() -> float:
    """Seconds between status lines when not on a terminal (``$DEEPCASCADE_PROGRESS_EVERY``, default 30)."""
    text = os.environ.get(ENV, "")
    try:
        value = float(text) if text.strip() else DEFAULT_EVERY
    except ValueError:
        value = DEFAULT_EVERY
    return max(0.0, value)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class StatusLines:
    """tqdm's interface, written as one plain line every ``every`` seconds (no carriage return, no ANSI)."""

    def __init__(self, iterable=None, total=None, desc: str = "", unit: str = "it", initial: int = 0,
                 every: float | None = None, stream=None, **_ignored):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self._start_n = initial
        self.every = every_seconds() if every is None else every
        self.stream = stream
        self.postfix = ""
        self._t0 = self._last = time.monotonic()
        self._printed = 0
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def line(self) -> str:
        elapsed = time.monotonic() - self._t0
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.3g} s/{self.unit}")
        parts.append(f"{_clock(elapsed)} elapsed")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"~{_clock((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _emit(self) -> None:
        stream = self.stream or sys.stderr
        stream.write(self.line() + "\n")
        stream.flush()
        self._printed += 1

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.every > 0 and now - self._last >= self.every:
            self._last = now
            self._emit()

    def set_postfix(self, values: dict | None = None, refresh: bool = True, **kwargs) -> None:
        values = {**(values or {}), **kwargs}
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._printed:  # a loop that said something says when it ended too
                self._emit()


class _Off(StatusLines):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self._closed = True


def on_terminal(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "it", initial: int = 0,
             disable: bool | None = False, leave: bool = False, **kwargs):
    """A tqdm bar on a terminal, :class:`StatusLines` elsewhere, nothing when ``disable`` is true."""
    if disable:
        return _Off(iterable, total=total, desc=desc, unit=unit, initial=initial)
    if on_terminal():
        from tqdm import tqdm

        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, **kwargs)
    return StatusLines(iterable, total=total, desc=desc, unit=unit, initial=initial)

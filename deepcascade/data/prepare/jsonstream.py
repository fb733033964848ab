"""Read a large JSON object's top-level arrays one element at a time, in bounded memory.

COCO's ``instances_train2017.json`` is about 450 MB; ``json.load`` (which ``pycocotools.COCO`` also calls) turns
it into several GB of Python objects, nearly all polygon coordinates that object crops never use. This reader
keeps a window of the file (4 MB chunks, grown only while one element is larger) and hands each element of a
top-level array to a callback, which keeps the few fields it needs. Peak memory is the window plus the
largest single element plus whatever the callbacks keep. Parsing is the standard library's ``json`` decoder
(``JSONDecoder.raw_decode``), so every value decodes exactly as ``json.load`` would decode it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

CHUNK = 4 << 20
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER_START = frozenset("-0123456789")
_NUMBER_CHARS = frozenset("0123456789.eE+-")


class JSONStreamError(ValueError):
    """Not valid JSON, or not an object at the top level; the message gives the character offset."""


class _Reader:
    def __init__(self, f, chunk: int):
        self.f, self.chunk = f, chunk
        self.buf, self.pos, self.base, self.eof = "", 0, 0, False
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        """Append more of the file (at least as much as is buffered, so a large element costs linear time)."""
        if self.eof:
            return False
        data = self.f.read(max(self.chunk, len(self.buf) - self.pos))
        if not data:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        return True

    def error(self, what: str) -> JSONStreamError:
        return JSONStreamError(f"{what} at character {self.base + self.pos}")

    def peek(self) -> str:
        """The next non-whitespace character (not consumed)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                raise self.error("unexpected end of file")

    def take(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.error(f"expected {ch!r}, found {self.buf[self.pos]!r}")
        self.pos += 1

    def value(self):
        self.peek()
        while True:
            try:
                v, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self._fill():
                    continue  # the value runs past the window
                raise JSONStreamError(f"{e.msg} at character {self.base + e.pos}") from None
            if not self.eof and (end >= len(self.buf) or (self.buf[self.pos] in _NUMBER_START
                                                         and self.buf[end] in _NUMBER_CHARS)):
                if self._fill():
                    continue  # a number cut by the window's end ("-1.5e" decodes as -1.5): read on
            self.pos = end
            return v


def stream_object(path: str | Path, on_element: dict[str, Callable], on_value: dict[str, Callable] | None = None,
                  chunk: int = CHUNK) -> list[str]:
    """Walk the top-level object of ``path``; returns its keys in file order.

    For a key in ``on_element`` whose value is an array, ``on_element[key](element)`` is called per element;
    for a key in ``on_value``, ``on_value[key](value)`` gets the whole value (keep those small). Every other
    value is parsed and dropped element by element, so it never sits in memory whole.
    """
    on_value = on_value or {}
    keys = []
    with open(path, encoding="utf-8") as f:
        r = _Reader(f, chunk)
        r.take("{")
        if r.peek() == "}":
            return keys
        while True:
            key = r.value()
            if not isinstance(key, str):
                raise r.error("expected a key string")
            keys.append(key)
            r.take(":")
            if key not in on_value and r.peek() == "[":
                r.pos += 1
                handle = on_element.get(key)
                if r.peek() == "]":
                    r.pos += 1
                else:
                    while True:
                        element = r.value()
                        if handle is not None:
                            handle(element)
                        c = r.peek()
                        r.pos += 1
                        if c == "]":
                            break
                        if c != ",":
                            r.pos -= 1
                            raise r.error(f"expected ',' or ']' in array '{key}'")
            else:
                v = r.value()
                if key in on_value:
                    on_value[key](v)
            c = r.peek()
            r.pos += 1
            if c == "}":
                return keys
            if c != ",":
                r.pos -= 1
                raise r.error("expected ',' or '}' after a top-level value")

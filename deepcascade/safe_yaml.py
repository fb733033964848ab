"""The one YAML reader of the package, with bounds; and short, cut excerpts of values for messages.

Every config file, ``--set`` value and run directory's ``config.yaml`` is read by :func:`load`. PyYAML's safe
loader builds aliases as shared references, so a few hundred bytes of nested aliases ("billion laughs") load
in microseconds into a structure of billions of elements that any later walk (``repr``, a deep copy, a
comparison) expands; and its composer recurses once per nesting level, so a few thousand nested brackets end
in a ``RecursionError``. :func:`load` refuses both before anything is built: a document may nest at most
:data:`MAX_DEPTH` levels and expand, aliases counted at every use, to at most :data:`MAX_NODES` nodes. Anchors
and aliases within those bounds (``lr: &lr 1e-3`` ... ``lr: *lr``) keep working: a configuration has about
a hundred fields, so the bounds are two orders of magnitude above any real one.
"""

from __future__ import annotations

import reprlib
from typing import Any

import yaml

from .errors import UserError

MAX_DEPTH = 64
MAX_NODES = 10_000
EXCERPT_CHARS = 80

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 3, 6, 6, 40, 40


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` bounded: at most a few elements per level and ``limit`` characters in all, whatever the
    value's size or nesting (plain ``repr`` walks the whole structure)."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Refused(yaml.YAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting bound while composing and a size bound before constructing."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        if _expanded_size(node) > MAX_NODES:
            raise _Refused(f"expands to more than {MAX_NODES} values (aliases counted at every use)")
        return super().construct_document(node)


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded; each distinct node is sized once, so the count costs
    the document's length, not its expansion. Composed documents are acyclic (PyYAML refuses an alias of an
    anchor still being composed) and at most MAX_DEPTH deep, so the recursion is bounded."""
    sizes: dict[int, int] = {}

    def size(node) -> int:
        if id(node) not in sizes:
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = []
            sizes[id(node)] = 1 + sum(size(c) for c in children)
        return sizes[id(node)]

    return size(root)


def _describe(e: yaml.YAMLError) -> str:
    """One line: PyYAML's messages span several lines and quote the source."""
    if isinstance(e, _Refused):
        return str(e)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or type(e).__name__
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    text = " ".join(f"{problem}{where}".split())
    return text if len(text) <= 160 else text[:157] + "..."


def load(text: str, what: str) -> Any:
    """Parse one YAML document; a malformed, too deeply nested or too large document raises a one-line
    :class:`UserError` that starts with ``what`` (the file or option it came from)."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise UserError(f"{what} is not usable YAML: {_describe(e)}") from None
    except RecursionError:  # a structure the bounds above did not foresee
        raise UserError(f"{what} is not usable YAML: nested too deeply") from None
    finally:
        loader.dispose()

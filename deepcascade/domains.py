"""The names of the two domains and of the two translation directions, for the whole package.

A domain is 'a' or 'b' in the API, on the command line and in stage names (``synth_a5``), and 'A' or 'B' in
data folders (``trainA/``) and network names (``D_A``). A direction is 'a2b' or 'b2a'; its networks are named
by 'AB' or 'BA' (``T_AB``).
"""

from __future__ import annotations

from .errors import UserError

DOMAINS = ("a", "b")
#: the same domains as data folders (``trainA``) and critics (``D_A``) name them
FOLDER_DOMAINS = ("A", "B")
#: direction -> (source domain, target domain)
DIRECTIONS = {"a2b": ("a", "b"), "b2a": ("b", "a")}
#: direction -> the suffix of its networks' names (``T_AB``, ``M_BA``)
NETWORK_DIRECTIONS = {"a2b": "AB", "b2a": "BA"}


def parse_domain(name: str) -> str:
    """'a' or 'b' from either case; UserError for anything else."""
    domain = str(name).lower()
    if domain not in DOMAINS:
        raise UserError(f"domain must be 'a' or 'b', got {name!r}")
    return domain

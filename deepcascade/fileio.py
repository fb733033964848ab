"""Safe file I/O: atomic writes, and torch loads that never execute code.

Writes: a temporary file beside the target, fsync, then a rename over it. A crash or a failing write (disk
full, read-only folder) never leaves a half-written file under the final name, and any previous file stays
intact. Every file deepcascade writes (checkpoints, statistics, cache metadata, configs, images, HTML pages)
goes through :func:`atomic_path`.

Loads: every checkpoint and weights file goes through :func:`safe_torch_load` (``weights_only=True``), so a
pickle carrying code is refused without running anything.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the suffix, so writers that pick a format from it (PIL) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def safe_torch_load(path: str | Path, what: str, hint: str = ""):
    """``torch.load(path, weights_only=True)`` on the CPU; a missing, truncated, corrupt or code-carrying file
    raises UserError naming ``what`` and the path (plus ``hint``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read {what} {path}: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
                        f"{' (' + hint + ')' if hint else ''}") from None

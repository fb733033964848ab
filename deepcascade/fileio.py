"""Safe file I/O: atomic writes, and torch loads that never execute code.

Writes: a temporary file beside the target, fsync, then a rename over it. A crash or a failing write (disk
full, read-only folder) never leaves a half-written file under the final name, and any previous file stays
intact. Every file deepcascade writes (checkpoints, statistics, cache metadata, configs, images, HTML pages)
goes through :func:`atomic_path`.

Loads: every checkpoint and weights file goes through :func:`safe_torch_load` (``weights_only=True``), so a
pickle carrying code is refused without running anything.

Outputs never replace inputs: every command that writes files under an output folder calls
:func:`check_output_location` with its input paths and the files it plans to write, replaces an existing
output file only when the user passed ``--overwrite`` (:data:`OVERWRITE_HELP`, :func:`kept_existing_note`),
and holds :func:`folder_lock` on its output folder so that two processes never write the same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

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
    import torch  # here, not at the top: the CLI's parser imports this module and must stay light

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read {what} {path}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
                        f"{' (' + hint + ')' if hint else ''}") from None


# ------------------------------------------------------------------------------------------ outputs vs inputs
OVERWRITE_HELP = "replace output files that already exist (never an input file); without it they are kept and counted"


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and folder in path.parents


def check_output_location(out: str | Path, inputs: dict[str, str | Path | None],
                          outputs: Iterable[str | Path] | None = None, output_folders: Iterable[str | Path] = (),
                          out_flag: str = "--out") -> None:
    """Refuse an output folder ``out`` that is, lies inside, or contains an input (UserError naming both).

    ``inputs`` maps each input's flag or field (``"--input"``, ``"data.root"``) to its path (file or folder;
    None is ignored). ``outputs`` are the files the command will write and ``output_folders`` folders whose
    every file it may write: when they are given, an overlapping ``out`` is still allowed as long as none of
    them is (or holds) an existing file of that input (any file below it, image or not), i.e. the outputs
    cannot replace an input. ``outputs=None`` refuses every overlap. An ``out`` that is an existing file is
    refused too. Symbolic links are resolved on both sides.
    """
    out_p = Path(out)
    if out_p.exists() and not out_p.is_dir():
        raise UserError(f"{out_flag} {out} is an existing file; give a folder")
    out_r = out_p.resolve()
    planned = None if outputs is None else {Path(p).resolve() for p in outputs}
    folders = [Path(f).resolve() for f in output_folders]
    for flag, inp in inputs.items():
        if inp is None:
            continue
        in_r = Path(inp).resolve()
        relation = ("is" if out_r == in_r else "lies inside" if _inside(out_r, in_r)
                    else "contains" if _inside(in_r, out_r) else None)
        if relation is None:
            continue
        if planned is None:
            raise UserError(f"{out_flag} {out} {relation} the input {flag} {inp}; choose an {out_flag} that does "
                            f"not overlap {inp}")
        files = [in_r] if in_r.is_file() else [p for p in in_r.rglob("*") if p.is_file()]
        files = {p.resolve() for p in files}
        hits = sorted(f for f in files if f in planned or any(_inside(f, d) for d in folders))
        if hits:
            raise UserError(f"{out_flag} {out} {relation} the input {flag} {inp}: writing there could replace "
                            f"{len(hits)} input file(s), e.g. {hits[0]}; choose an {out_flag} outside {inp}")


def kept_existing_note(count: int, out: str | Path, what: str = "output(s)") -> str:
    """The one line a command prints when it kept ``count`` existing outputs instead of replacing them."""
    return f"kept {count} existing {what} in {out} (not replaced; pass --overwrite to replace them)"


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (file ``folder/.lock``, created with the folder) for the block.

    A second deepcascade process asking for the same folder gets a UserError at once instead of writing the
    same files concurrently. The lock is an ``flock``: it is released when its holder exits, even when killed
    (the file then stays behind, harmless). On a normal exit the file is removed while still locked; a process
    that locked the removed file sees that the path no longer names it and tries again.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UserError(f"{what} {folder} is in use by another deepcascade process (lock {lock}); wait for "
                            f"it to finish or stop it") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # we locked a file its holder had just removed: take the current one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

"""The output folder every ``prepare`` kind writes: layout, manifest, completion marker, atomic files.

``OUT/trainA/ trainB/ testA/ testB/`` hold the images, ``OUT/manifest.jsonl`` one JSON record per image written
(its ``file`` relative to OUT and where it came from), ``OUT/prepare.json`` the kind, its options, the counts
and every skip with its reason.

Idempotence rests on two rules:

- Every image is written through :func:`deepcascade.fileio.atomic_path` (temporary file, then rename), so a
  file under its final name is always whole.
- ``prepare.json`` says ``"complete": false`` from the first write on and ``"complete": true`` only after the
  manifest, written last. A run killed at any point therefore leaves an output that is not taken as complete;
  the next run with the same options keeps the whole files it finds, writes the rest, removes what the plan
  does not name (the interrupted run's temporary files), and only then marks the output complete. A re-run over
  a complete output does nothing and says so.

An ``--out`` that is, lies inside, or contains an input folder is refused, so the user's files are never
written over; so is a non-empty folder that is not a ``prepare`` output, and one prepared with other options.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path
from typing import Callable

from ...domains import FOLDER_DOMAINS
from ...errors import UserError
from ...fileio import atomic_path, check_output_location, folder_lock, write_text

log = logging.getLogger("deepcascade")

MARKER = "prepare.json"
MANIFEST = "manifest.jsonl"
FORMAT = 1
FOLDERS = tuple(f"{split}{d}" for split in ("train", "test") for d in FOLDER_DOMAINS)


def folder_of(split: str, domain: str) -> str:
    """``("train", "A") -> "trainA"``."""
    if split not in ("train", "test") or domain not in FOLDER_DOMAINS:
        raise ValueError(f"bad split/domain {split!r}/{domain!r}")
    return f"{split}{domain}"


def check_separate(out: Path, inputs: dict[str, Path]) -> None:
    """Refuse an output that is, lies inside, or contains one of the inputs (named by their flags): the one
    check every command runs (:func:`deepcascade.fileio.check_output_location`), strict here: any overlap."""
    check_output_location(out, inputs, outputs=None)


def _first_difference(old: dict, new: dict) -> str:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} there, {new.get(key)!r} now"
    return ""


class PreparedOutput:
    """One ``prepare`` run's output folder::

        with PreparedOutput(out, kind, options, inputs) as prep:
            if not prep.start():
                return prep.meta  # already complete
            ... prep.write(...) per image ...
            return prep.finish(...)

    From its first write to the end of the ``with`` block the folder is locked
    (:func:`deepcascade.fileio.folder_lock`), so two processes never prepare the same folder at once.
    """

    def __init__(self, out: str | Path, kind: str, options: dict, inputs: dict[str, Path],
                 extends: Callable[[dict], bool] | None = None):
        """``extends(old_options)``: True when an output prepared with ``old_options`` holds a subset of this
        run's files, each already as this run writes it (a smaller synthetic set): it is completed as an
        interrupted run would be instead of refused."""
        self.out = Path(out)
        self.kind = kind
        self.options = json.loads(json.dumps({"kind": kind, **options}))  # plain JSON types, as stored
        self.inputs = inputs
        self.extends = extends
        self.records: dict[str, dict] = {}
        self.resuming = False
        self.written = 0
        self.kept = 0
        self.meta: dict | None = None
        self._lock = contextlib.ExitStack()
        self._locked = False

    def __enter__(self) -> "PreparedOutput":
        return self

    def __exit__(self, *exc) -> None:
        self._lock.close()

    # ------------------------------------------------------------------------------------------------ start
    def start(self, adopt: bool = False) -> bool:
        """Check the folder; False (with a message) when it is already complete. The folder is marked
        incomplete only when the first image is written, so that input checks failing before that leave
        nothing behind. ``adopt``: the caller checked that a folder without a marker holds only files this run
        would write itself (a synthetic set from before the marker): they are kept as an interrupted run's."""
        check_separate(self.out, self.inputs)
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is an existing file; give a directory")
        marker = self.out / MARKER
        if marker.is_file():
            try:
                meta = json.loads(marker.read_text(encoding="utf-8"))
                old_options = meta["options"]
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{marker} is not a readable prepare marker; delete {self.out} to prepare "
                                f"again") from None
            if old_options != self.options and not (self.extends and self.extends(old_options)):
                raise UserError(f"--out {self.out} holds a '{old_options.get('kind')}' preparation with other "
                                f"options ({_first_difference(old_options, self.options)}); use another --out, "
                                f"or delete {self.out} to redo it")
            missing = self._missing_files() if meta.get("complete") is True else []
            if meta.get("complete") is True and old_options == self.options and not missing:
                self.meta = meta
                print(f"{self.out} is already prepared ({MARKER} says complete; same options): nothing to do")
                print(format_summary(meta))
                return False
            self.resuming = True
            if old_options != self.options:
                log.info("extending the preparation in %s (its files are kept)", self.out)
            elif missing:
                log.info("%d file(s) of %s are missing (e.g. %s): writing them again", len(missing), self.out,
                         missing[0])
            else:
                log.info("completing an interrupted preparation in %s (whole files are kept)", self.out)
        elif self.out.is_dir() and any(p.name != ".lock" for p in self.out.iterdir()):  # a killed run's lock
            if adopt:
                self.resuming = True
                log.info("completing %s, written without %s (its files are kept)", self.out, MARKER)
                return True
            raise UserError(f"--out {self.out} exists, is not empty and holds no {MARKER} (not a prepare "
                            f"output); choose a new or empty folder")
        return True

    def _missing_files(self) -> list[str]:
        """Files the manifest names that are not there (deleted by hand after the run): a re-run writes them."""
        try:
            lines = (self.out / MANIFEST).read_text(encoding="utf-8").splitlines()
            files = [json.loads(line)["file"] for line in lines if line.strip()]
        except (OSError, ValueError, KeyError, TypeError):
            return [MANIFEST]
        return [f for f in files if not (self.out / f).is_file()]

    def lock(self) -> None:
        """Take the folder's lock now (it is otherwise taken at the first write); held to the end of the block."""
        if not self._locked:
            self._lock.enter_context(folder_lock(self.out, "prepare output"))  # creates the folder
            self._locked = True

    def _begin(self) -> None:
        """Mark the output incomplete before its first file (a failing check before it leaves nothing)."""
        if self.meta is None or self.meta.get("complete") is not False:
            self.lock()
            self._write_marker({"complete": False})

    def _write_marker(self, fields: dict) -> None:
        from ...version import __version__

        meta = {"format": FORMAT, "kind": self.kind, "deepcascade_version": __version__,
                "options": self.options, **fields}
        write_text(self.out / MARKER, json.dumps(meta, indent=2) + "\n")
        self.meta = meta

    # ------------------------------------------------------------------------------------------------ files
    def exists(self, dest: str) -> bool:
        """True when resuming and ``dest`` was written whole by the interrupted run."""
        return self.resuming and (self.out / dest).is_file()

    def write(self, dest: str, record: dict, writer: Callable[[Path], None]) -> None:
        """Write ``OUT/dest`` atomically with ``writer(tmp_path)`` (kept as is when resuming) and record it.

        ``writer`` may raise; then nothing is written or recorded and the exception propagates."""
        if dest in self.records:
            raise ValueError(f"two images planned under the same name {dest}")
        self._begin()
        if self.exists(dest):
            self.kept += 1
        else:
            with atomic_path(self.out / dest) as tmp:
                writer(tmp)
            self.written += 1
        self.records[dest] = {"file": dest, **record}

    def copy(self, src: Path, dest: str, record: dict) -> None:
        self.write(dest, record, lambda tmp: shutil.copyfile(src, tmp))

    # ----------------------------------------------------------------------------------------------- finish
    def _remove_unplanned(self) -> list[str]:
        removed = []
        for folder in FOLDERS:
            root = self.out / folder
            if not root.is_dir():
                continue
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(self.out).as_posix()
                if p.is_file() and rel not in self.records:
                    p.unlink()
                    removed.append(rel)
        return removed

    def finish(self, domains: dict[str, str], skipped: dict[str, dict[str, int]], skipped_files: list[dict],
               extra: dict | None = None) -> dict:
        """Remove unplanned files, write the manifest, then mark the output complete; returns the marker."""
        for dest in self.records:
            if not (self.out / dest).is_file():  # a file deleted by hand while a resume was running
                raise UserError(f"{self.out / dest} disappeared during preparation; run the command again")
        self._begin()
        removed = self._remove_unplanned()
        for rel in removed:
            log.info("removed %s (not part of this preparation: left by an interrupted run)", rel)
        for folder in FOLDERS:
            (self.out / folder).mkdir(exist_ok=True)
        lines = [json.dumps(self.records[k], sort_keys=True) for k in sorted(self.records)]
        write_text(self.out / MANIFEST, "".join(line + "\n" for line in lines))
        counts = {f: sum(1 for k in self.records if k.startswith(f + "/")) for f in FOLDERS}
        self._write_marker({"complete": True, "domains": domains, "counts": counts, "skipped": skipped,
                            "skipped_files": skipped_files, **(extra or {})})
        print(f"prepared {self.kind} -> {self.out} ({self.written} written, {self.kept} kept from an "
              f"interrupted run)" if self.resuming else f"prepared {self.kind} -> {self.out}")
        print(format_summary(self.meta))
        return self.meta


def format_summary(meta: dict) -> str:
    """Counts per folder and skips per reason, as printed after a run and on a re-run."""
    domains = meta.get("domains", {})
    lines = []
    for folder, n in meta.get("counts", {}).items():
        label = domains.get(folder[-1], "")
        lines.append(f"  {folder:7s} {n:7d} images{f'  ({label})' if label else ''}")
    for label, reasons in meta.get("skipped", {}).items():
        shown = ", ".join(f"{reason} {n}" for reason, n in reasons.items() if n) or "none"
        lines.append(f"  skipped {label}: {shown}")
    files = meta.get("skipped_files", [])
    if files:
        lines.append(f"  {len(files)} skipped file(s), each with its reason, under 'skipped_files' in {MARKER}")
    return "\n".join(lines)

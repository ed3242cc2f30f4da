"""Atomic writes: a file or folder appears whole under its name, or not at all.

Everything is first written under a temporary name beside its target (same folder, so the
final rename(2) never crosses a file system), then renamed. A failure, or a kill, leaves
the target as it was; the temporaries are named ``.NAME.tmp-XXXXXXXX`` so they can be found
and removed later (`leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

#: Infix of every temporary name made here.
TMP = ".tmp-"


def temporary_name(target: Path) -> Path:
    """A fresh temporary sibling of `target` (``.NAME.tmp-XXXXXXXX``)."""
    return target.with_name(f".{target.name}{TMP}{uuid.uuid4().hex[:8]}")


def leftovers(folder: Path) -> list[Path]:
    """The temporaries of this module that a killed writer left in `folder`."""
    return sorted(p for p in folder.glob(f".*{TMP}*") if p.is_file() or p.is_dir())


@contextlib.contextmanager
def file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `target`'s content to; on success it replaces
    `target` (os.replace), on failure it is removed and `target` is untouched."""
    target = Path(target)
    tmp = temporary_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(target: str | Path, text: str) -> Path:
    """Write `text` to `target` atomically; returns `target`."""
    with file(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_bytes(target: str | Path, data: bytes) -> Path:
    """Write `data` to `target` atomically; returns `target`."""
    with file(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


@contextlib.contextmanager
def folder(target: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder to fill; on success it takes `target`'s place.

    An existing `target` (a folder) is moved aside first and removed only once the new one
    is in place; if that rename fails, the old folder is put back. On failure the temporary
    folder is removed and `target` is untouched. `mode`: permissions of the new folder
    (default: as `mkdir` makes them under the process umask).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    tmp.mkdir() if mode is None else tmp.mkdir(mode)
    try:
        yield tmp
        replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_folder(new: Path, target: Path) -> None:
    """Move the finished folder `new` to `target`, replacing an existing one last (rename(2)
    cannot replace a non-empty folder: the old one is moved aside, then removed)."""
    if not target.exists():
        os.replace(new, target)
        return
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
        os.replace(new, target)
        return
    old = temporary_name(target)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the previous one back
        raise
    shutil.rmtree(old, ignore_errors=True)

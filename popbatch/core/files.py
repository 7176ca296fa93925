"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every file popbatch writes for others to read (scores, summaries, query results,
model files, training reports) is written to a temporary name beside the target,
flushed to disk, and renamed over it; a crash leaves at most a hidden temporary.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from popbatch.core.errors import InputError


def temporary_path(path: Path) -> Path:
    """The hidden temporary name a write to ``path`` stages under (unique per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync(path: Path) -> None:
    """Flush a file or a directory to disk, so a rename after a crash points at whole data."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(temporary: Path, path: Path) -> None:
    """Flush ``temporary`` and rename it over ``path`` (atomic on POSIX), then flush the folder.

    Raises
    ------
    OSError
        From the file system; ``temporary`` is then left for the caller to remove.
    """
    fsync(temporary)
    os.replace(temporary, path)
    fsync(Path(path).parent)


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file and a rename.

    Raises
    ------
    OSError
        From the file system; nothing is left behind and ``path`` is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def refuse_foreign_directory(directory: Path, marks: Sequence[str], option: str) -> None:
    """Refuse to write popbatch's files into a folder of someone else's.

    ``directory`` may be missing, empty, or hold one of ``marks`` (names popbatch
    writes there: an earlier run's, which it may replace); any other folder is
    refused, so that no file of the user's is overwritten by one of the same name.

    Raises
    ------
    InputError
        One line naming the folder, a few of its entries and the fix.
    """
    directory = Path(directory)
    if not directory.is_dir() or any((directory / mark).exists() for mark in marks):
        return
    entries = sorted(p.name for p in directory.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise InputError(
            f"{directory}: {option} names a folder of files popbatch did not write ({shown}); "
            "give a new or empty folder, or one popbatch wrote before"
        )

"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every file popbatch writes for others to read (scores, summaries, query results,
model files, training reports) is written to a temporary name beside the target,
flushed to disk, and renamed over it; a crash leaves at most a hidden temporary.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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

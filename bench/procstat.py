"""Run a command in a fresh process and measure it: wall seconds and peak RSS.

The one measuring helper of ``bench/``: :func:`measure` samples the resident
set size of the process *and its children* with psutil every ``interval``
seconds (a child's memory is part of what the job costs: a worker pool, a
subprocess) and keeps the largest sum seen. Sampling can miss a spike shorter
than the interval; at 20 ms that is well below a 65,536-row batch.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Measured:
    """What :func:`measure` saw of one command."""

    command: list[str]
    seconds: float
    cpu_seconds: float
    """User + system CPU seconds of the process and the children it waited for."""
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _tree_rss(process: psutil.Process) -> int:
    """RSS of ``process`` plus all its living descendants, in bytes."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:  # a child exited between listing and reading
            continue
    return total


def measure(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    interval: float = 0.02,
    echo_errors: bool = True,
) -> Measured:
    """Run ``command`` to completion; return wall seconds, peak RSS (MB) and its output.

    Parameters
    ----------
    command
        The argv to run (not through a shell).
    env
        Extra environment variables, added to this process's environment.
    interval
        Seconds between RSS samples.
    echo_errors
        Copy the command's stderr to ours when it fails.
    """
    full_env = {**os.environ, **(env or {})}
    # CPU time of waited-for children accrues in RUSAGE_CHILDREN when they exit:
    # its growth over this call is this command's CPU (robust to a busy machine).
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # Drain the pipes in the background so a chatty command never blocks on a full pipe.
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    readers = [_drain(process.stdout, out_chunks), _drain(process.stderr, err_chunks)]
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(watched))
        time.sleep(interval)
    seconds = time.perf_counter() - started
    cpu_seconds = _children_cpu() - cpu_before
    for reader in readers:
        reader.join()
    stderr = b"".join(err_chunks).decode(errors="replace")
    if process.returncode != 0 and echo_errors:
        sys.stderr.write(stderr[-4000:])
    return Measured(
        command=list(command),
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        peak_rss_mb=peak / 2**20,
        returncode=process.returncode,
        stdout=b"".join(out_chunks).decode(errors="replace"),
        stderr=stderr,
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _drain(pipe: IO[bytes], chunks: list[bytes]) -> threading.Thread:
    def read() -> None:
        for chunk in iter(lambda: pipe.read(65536), b""):
            chunks.append(chunk)
        pipe.close()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread

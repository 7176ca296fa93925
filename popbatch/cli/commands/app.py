"""``popbatch app``: the Streamlit app (one track, a file, the model card) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click

from popbatch.cli.commands.options import model_option
from popbatch.core.bundle import load_model
from popbatch.core.errors import InputError

HELP = """Try the model in a browser: type in a track, upload a file, read the model card.

\b
  popbatch app                                   # the embedded default model
  popbatch app --model exported/ --run runs/default --port 8502

Opens a Streamlit app on http://127.0.0.1:PORT (only this machine can reach it
unless --host says otherwise). 'One track' is a form with every model input,
bounded by the model's valid ranges; 'Predict' shows the popular probability
against the threshold, the label, the heads' predictions when the model has
them, and the top reasons when this popbatch has popbatch explain. 'A file'
scores an uploaded CSV or Parquet file (at most 10,000 rows) and offers the
scored file for download. 'The model' is the model card, with the training
report's plots when --run names the run directory. Every score comes from
the same code and ONNX model as 'popbatch score'.

Needs the app extra: pip install 'popbatch[app]'.
"""

# Imports the app's script as a module (which draws nothing) and runs its serve().
LAUNCH = "from popbatch.cli.app import serve; serve()"


@click.command("app", help=HELP)
@model_option
@click.option(
    "--run",
    "run_dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="RUN_DIR",
    help="Run directory of 'popbatch train' whose report plots the model page shows.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 makes the app reachable from other machines.",
)
def app(model_dir: Path | None, run_dir: Path | None, port: int, host: str) -> None:
    if importlib.util.find_spec("streamlit") is None:
        raise InputError(
            "popbatch app needs Streamlit, which the scoring install leaves out; "
            "install the app extra: pip install 'popbatch[app]'"
        )
    bundle = load_model(model_dir)  # a bad model fails here, with its one-line message
    if run_dir is not None and not run_dir.is_dir():
        raise InputError(f"--run {run_dir}: no such run directory")
    env = dict(os.environ)
    env["POPBATCH_APP_MODEL"] = str(bundle.directory.resolve())
    env.pop("POPBATCH_APP_RUN", None)
    if run_dir is not None:
        env["POPBATCH_APP_RUN"] = str(run_dir.resolve())
    command = streamlit_command(host, port)
    click.echo(f"popbatch app: model {bundle.model_id[:12]} on http://{host}:{port}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)  # Streamlit owns the process (and Ctrl-C) from here


def streamlit_command(host: str, port: int) -> list[str]:
    """``streamlit run popbatch/cli/app.py`` with the server settings popbatch uses, through
    :func:`popbatch.cli.app.serve` (which loads the model first)."""
    return [
        sys.executable, "-c", LAUNCH,
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--server.maxUploadSize", "50",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "light",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip


@contextlib.contextmanager
def running_app(
    *args: str, port: int | None = None, log: Path | None = None, timeout: float = 90
) -> Iterator[str]:
    """Run ``popbatch app ARGS`` in the background on 127.0.0.1 until the block ends.

    Yields the app's URL once its health check answers; the server is stopped
    (terminated, killed after 10 s) however the block ends. ``port`` defaults
    to a free one; the server's output goes to ``log`` (default: discarded).
    Used by the browser test and ``bench/app.py``.

    Raises
    ------
    RuntimeError
        The server exited or did not answer within ``timeout`` seconds.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "popbatch", "app", "--port", str(port), *args]
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("wb")) if log else subprocess.DEVNULL
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="popbatch-app-home-"))
        env = {**os.environ, "HOME": home}  # Streamlit writes ~/.streamlit
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_for_health(url, process, timeout)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_health(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"popbatch app exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"popbatch app did not answer on {url} within {timeout:g} s")

"""Typed errors raised anywhere in popbatch and turned into one-line messages
and exit codes in one place: the CLI edge (``popbatch.cli.main``).

Exit codes (documented in ``popbatch --help``, README.md and docs/nightly.md):

====  ==========================================================
0     success
1     the run failed (I/O, model, unexpected error)
2     usage or input error (bad file, column, row, option)
3     drift detected (``popbatch drift``)
75    another run holds the lock on the target (EX_TEMPFAIL)
130   interrupted (Ctrl-C / SIGINT)
====  ==========================================================
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
EXIT_LOCKED = 75
EXIT_INTERRUPTED = 130


class PopbatchError(Exception):
    """Base of every error popbatch reports to a user.

    The message is one line that names the file, column or row and, where
    there is one, the fix.
    """

    exit_code = EXIT_FAILED


class InputError(PopbatchError):
    """The input cannot be used as given: missing or unreadable file, bad option value."""

    exit_code = EXIT_USAGE


class SchemaError(InputError):
    """The input's columns do not fit what the model needs."""


class InvalidRowError(InputError):
    """A row holds a value the model cannot score (with ``--on-invalid fail``)."""


class TrainingError(InputError):
    """The data cannot train a model (for example too few positives)."""


class ModelError(PopbatchError):
    """The model or its manifest is missing, tampered with, or inconsistent."""


class OutputError(PopbatchError):
    """The output cannot be written (permissions, full disk, bad target)."""


class LockError(PopbatchError):
    """Another run holds the lock on the same target."""

    exit_code = EXIT_LOCKED


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """An error's text on one line (cron logs keep one line per failure), cut at ``limit``.

    >>> one_line(ValueError("bad\\n  value"))
    'bad value'
    """
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if limit is None else text[:limit]

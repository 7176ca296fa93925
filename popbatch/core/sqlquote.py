"""Quoting for SQL text popbatch builds: identifiers, column names, string literals.

Everything a user types that reaches DuckDB goes through one of these (or is bound
as a prepared parameter), so a table name or a model id can never carry SQL.
"""

from __future__ import annotations

import re

from popbatch.core.errors import InputError

# A plain or schema-qualified SQL identifier; anything else is refused, and what
# passes is still quoted.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str, what: str = "table") -> str:
    """Validate a (possibly schema-qualified) identifier and return it double-quoted.

    >>> quote_identifier("main.scores")
    '"main"."scores"'

    Raises
    ------
    InputError
        If any part is not letters, digits and underscores starting with a
        letter or underscore (``x; DROP TABLE t`` is refused, never run).
    """
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(IDENTIFIER.match(p) for p in parts):
        raise InputError(
            f"{what} name {name!r} is not a plain SQL identifier; use letters, digits and "
            "underscores (optionally schema.table)"
        )
    return ".".join(f'"{p}"' for p in parts)


def quote_column(name: str) -> str:
    """Double-quote any column name for DuckDB (embedded quotes doubled).

    >>> print(quote_column("Duration (ms)"))
    "Duration (ms)"
    """
    return '"' + name.replace('"', '""') + '"'


def quote_string(text: str) -> str:
    """A SQL string literal (embedded single quotes doubled).

    >>> quote_string("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"

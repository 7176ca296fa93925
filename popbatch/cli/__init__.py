"""The edge on top of everything: the ``popbatch`` command and the Streamlit app.

- :mod:`popbatch.cli.main`: the click group, its command registry and the one place
  where typed errors become one ``Error:`` line and an exit code;
- :mod:`popbatch.cli.commands`: one module per command, and the options and
  progress bar they share;
- :mod:`popbatch.cli.app` (the Streamlit script) and :mod:`popbatch.cli.interactive`
  (what it computes, without Streamlit).

Modules here may import every layer below (core, scoring, training, export); no
module below imports this package.
"""

"""popbatch's SQL files: the scored-table schema, the run log and the reports (``reports/``)."""

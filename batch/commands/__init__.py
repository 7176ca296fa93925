"""One module per popbatch command; each does only option parsing and reporting."""

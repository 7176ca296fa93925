"""One module per ``popbatch`` command; each only parses options and reports."""

from batch.cli import cli

cli(prog_name="popbatch")

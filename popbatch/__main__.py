import sys

try:
    from popbatch.batch.cli import cli
except KeyboardInterrupt:  # Ctrl-C while the CLI is still being imported
    sys.stderr.write("Error: interrupted; nothing partial was written\n")
    sys.exit(130)

cli(prog_name="popbatch")

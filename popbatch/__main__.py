import sys

try:
    from popbatch.cli.main import cli
except KeyboardInterrupt:  # Ctrl-C while the CLI is still being imported
    sys.stderr.write("Error: interrupted; nothing partial was written\n")
    sys.exit(130)

cli(prog_name="popbatch")

"""popbatch's benchmarks (not installed). Each maintained tool has ``--quick``: a tiny
run that checks the script still works, which ``tests/test_bench.py`` runs."""

QUICK_HELP = "a tiny run that checks the script works (tests/test_bench.py runs it)"

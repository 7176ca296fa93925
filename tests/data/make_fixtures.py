"""Derive the committed fixtures from ../shared/data (run from the repo root).

Rows are selected, never edited: each fixture row is a row of the shared
file, written back with Python's csv module. Seeded, so rerunning gives the
same files. See tests/data/ATTRIBUTION.md.
"""

import csv
import random
import shutil
from pathlib import Path

SHARED = Path("../shared/data")
SAMPLE = SHARED / "spotify_tracks_PARTIAL_sample_10000.csv"
DEV = SHARED / "spotify_tracks_dev.csv"


def artist_rows(rows: list[list[str]], rng: random.Random, artists: int, extra: int) -> list[int]:
    """Indices of every row of ``artists`` artists drawn among those with 5-40 rows (so
    artist and album histories repeat, as in a real catalog), plus ``extra`` random rows
    (mostly one-off artists: the unseen keys), in file order."""
    by_artist: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_artist.setdefault(row[2], []).append(i)
    candidates = sorted(a for a, idx in by_artist.items() if a and 5 <= len(idx) <= 40)
    picked = {i for a in rng.sample(candidates, artists) for i in by_artist[a]}
    rest = sorted(set(range(len(rows))) - picked)
    return sorted(picked | set(rng.sample(rest, extra)))


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    rng = random.Random(20261121)
    picked = rng.sample(range(len(rows)), 2000)
    write_rows(Path("tests/data/tracks_2000.csv"), header, [rows[i] for i in sorted(picked)])
    rest = sorted(set(range(len(rows))) - set(picked))
    catalog = rng.sample(rest, 1000)
    write_rows(Path("batch/sample/catalog.csv"), header, [rows[i] for i in sorted(catalog)])
    shutil.copyfile(SHARED / "spotify_data_small.csv", "tests/data/spotify_data_small.csv")
    with DEV.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    chosen = artist_rows(rows, random.Random(20261205), 60, 600)
    write_rows(Path("tests/data/tracks_priors.csv"), header, [rows[i] for i in chosen])


if __name__ == "__main__":
    main()

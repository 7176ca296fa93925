"""Preprocessor: the same matrix as training, per-row validation reasons, schema errors."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import SMALL_TITLE_CASE, TRACKS_2000
from model_factory import training_matrix
from popbatch.batch.preprocess import Preprocessor

from popbatch.core.errors import InputError, InvalidRowError, SchemaError


@pytest.fixture(scope="module")
def manifest(model_dir):
    return json.loads((model_dir / "manifest.json").read_text())


def text_batch(path=TRACKS_2000) -> pa.RecordBatch:
    """The file read as text, as CsvSource reads it."""
    table = pacsv.read_csv(path)
    table = table.cast(pa.schema([(n, pa.string()) for n in table.column_names]))
    return table.combine_chunks().to_batches()[0]


def test_matrix_equals_the_training_matrix(manifest):
    """Scoring builds exactly the matrix the model was fitted on (float32, same order)."""
    expected, _, _ = training_matrix()
    batch = text_batch()
    pre = Preprocessor(manifest).bind(batch.schema, "tracks")
    prepared = pre.transform(batch)
    assert prepared.rejects is None
    assert prepared.features.dtype == np.float32 and prepared.features.flags.c_contiguous
    np.testing.assert_array_equal(prepared.features, expected.astype(np.float32))
    assert prepared.passthrough.column("track_id").to_pylist()[:2] == [
        "4ChVFOiAIPwnKLgWGUcErS",
        "5T9aWINkvC8GtmcFI2TZAb",
    ]


def test_title_case_headers_are_normalised_and_fill_supplies_time_signature(manifest):
    batch = text_batch(SMALL_TITLE_CASE)
    pre = Preprocessor(manifest, fills={"time_signature": "4"}).bind(batch.schema, "small")
    prepared = pre.transform(batch)
    assert prepared.rows == 227 and prepared.rejects is None
    names = [f["name"] for f in manifest["features"]]
    np.testing.assert_array_equal(prepared.features[:, names.index("time_signature")], 4.0)
    # "Duration (ms)" -> duration_ms: the first row's value lands in its column
    assert prepared.features[0, names.index("duration_ms")] == 270698.0
    assert prepared.features[0, names.index("explicit")] == 1.0  # "True"
    # no genre column: every row is in the "other" bucket
    np.testing.assert_array_equal(prepared.features[:, names.index("genre=__other__")], 1.0)
    assert prepared.genre_other == 227
    assert pre.fills_applied == {"time_signature": {"value": 4.0, "column_absent": True}}


def _one_row_batch(**overrides: str | None) -> pa.RecordBatch:
    batch = text_batch()
    row = {name: batch.column(name)[0].as_py() for name in batch.schema.names}
    rows = [row, {**row, **overrides}]
    return pa.RecordBatch.from_pylist(rows, schema=batch.schema)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"danceability": "1.5"}, "danceability 1.5 is outside [0, 1]"),
        ({"tempo": "fast"}, "tempo fast is not a number"),
        ({"tempo": "-3"}, "tempo -3.0 is outside [0, 1000]"),
        ({"explicit": "yes"}, "explicit yes is not true/false/1/0"),
        ({"energy": None}, "energy is missing"),
        ({"loudness": "NaN"}, "loudness is NaN"),
        ({"duration_ms": "inf"}, "duration_ms inf is infinite"),
        ({"energy": None, "key": "12"}, "energy is missing; key 12.0 is outside [-1, 11]"),
    ],
)
def test_invalid_values_are_rejected_with_a_reason_and_original_values(manifest, overrides, reason):
    batch = _one_row_batch(**overrides)
    pre = Preprocessor(manifest).bind(batch.schema, "tracks")
    prepared = pre.transform(batch, first_row=101)
    assert prepared.features.shape[0] == 1  # the valid row is scored
    rejects = prepared.rejects.to_pylist()
    assert len(rejects) == 1
    assert rejects[0]["row"] == 102
    assert rejects[0]["reason"] == reason
    for column, value in overrides.items():
        assert rejects[0][column] == value  # the original text, not the parsed number


def test_on_invalid_fail_names_the_row_key_and_reason(manifest):
    batch = _one_row_batch(danceability="2")
    pre = Preprocessor(manifest, on_invalid="fail").bind(batch.schema, "tracks.csv")
    with pytest.raises(InvalidRowError) as info:
        pre.transform(batch, first_row=1)
    assert str(info.value) == (
        "tracks.csv: row 2 (track_id 4ChVFOiAIPwnKLgWGUcErS): danceability 2.0 is outside "
        "[0, 1]; fix the row, or use --on-invalid reject to write such rows to the rejects output"
    )


def test_genre_is_stripped_lowercased_and_unknown_goes_to_other(manifest):
    batch = _one_row_batch(track_genre=" Jazz ")
    more = pa.RecordBatch.from_pylist(
        [{**batch.to_pylist()[0], "track_genre": g} for g in ("not-a-genre", None)],
        schema=batch.schema,
    )
    both = pa.Table.from_batches([batch, more]).combine_chunks().to_batches()[0]
    pre = Preprocessor(manifest).bind(both.schema, "tracks")
    features = pre.transform(both).features
    names = [f["name"] for f in manifest["features"]]
    assert features[1, names.index("genre=jazz")] == 1.0
    assert features[2, names.index("genre=__other__")] == 1.0
    assert features[3, names.index("genre=__other__")] == 1.0
    assert (
        features[:, len(names) - len(manifest["genre"]["vocabulary"]) - 1 :].sum(axis=1) == 1
    ).all()


@pytest.mark.parametrize(
    "as_type",
    [
        lambda a: a,
        lambda a: a.cast(pa.large_string()),
        lambda a: a.dictionary_encode(),
    ],
    ids=["string", "large_string", "dictionary"],
)
def test_every_row_gets_its_genre_whatever_the_column_type(manifest, as_type):
    """The genre rules run on the column's distinct values: repeated, differently
    spelled, unknown and missing genres still land on their own rows' columns."""
    genres = ["jazz", " Jazz ", "pop", "not-a-genre", None, "JAZZ", "pop", None]
    row = _one_row_batch(track_genre="jazz").to_pylist()[0]
    plain = pa.RecordBatch.from_pylist([{**row, "track_genre": g} for g in genres])
    index = plain.schema.get_field_index("track_genre")
    arrays = plain.columns
    arrays[index] = as_type(arrays[index])
    batch = pa.RecordBatch.from_arrays(arrays, names=plain.schema.names)
    features = Preprocessor(manifest).bind(batch.schema, "tracks").transform(batch).features
    names = [f["name"] for f in manifest["features"]]
    expected = ["jazz", "jazz", "pop", "__other__", "__other__", "jazz", "pop", "__other__"]
    genre_start = len(names) - len(manifest["genre"]["vocabulary"]) - 1
    hot = [names[genre_start + i] for i in features[:, genre_start:].argmax(axis=1)]
    assert hot == [f"genre={g}" for g in expected]
    assert (features[:, genre_start:].sum(axis=1) == 1).all()


def test_missing_columns_are_listed_with_the_closest_names(manifest):
    schema = text_batch().schema
    names = [n for n in schema.names if n not in ("tempo", "valence")]
    renamed = pa.schema([(("tempo_bpm" if n == "liveness" else n), pa.string()) for n in names])
    with pytest.raises(SchemaError) as info:
        Preprocessor(manifest).bind(renamed, "cat.csv")
    # manifest order; difflib finds 'loudness' for liveness and 'tempo_bpm' for tempo
    assert str(info.value) == (
        "cat.csv: missing required columns liveness (closest present: 'loudness'), valence, "
        "tempo (closest present: 'tempo_bpm'); rename a column with --map NAME=COLUMN or "
        "supply a constant with --fill NAME=VALUE"
    )


def test_map_renames_and_a_bad_map_names_the_column(manifest):
    schema = pa.schema(
        [("BPM" if n == "tempo" else n, pa.string()) for n in text_batch().schema.names]
    )
    Preprocessor(manifest, maps={"tempo": "BPM"}).bind(schema, "cat.csv")  # no error
    with pytest.raises(InputError) as info:
        Preprocessor(manifest, maps={"tempo": "beats"}).bind(schema, "cat.csv")
    assert str(info.value) == "--map tempo=beats: cat.csv has no column 'beats'"


def test_genre_required_when_the_manifest_says_so(manifest):
    strict = {**manifest, "genre": {**manifest["genre"], "optional": False}}
    schema = pa.schema([(n, pa.string()) for n in text_batch().schema.names if n != "track_genre"])
    with pytest.raises(SchemaError, match="missing required column track_genre"):
        Preprocessor(strict).bind(schema, "cat.csv")
    Preprocessor(manifest).bind(schema, "cat.csv")  # optional: fine


@pytest.mark.parametrize(
    ("fill", "message"),
    [
        ({"tempo": "fast"}, "--fill tempo=fast: not a valid tempo value (a number [0, 1000])"),
        ({"mode": "3"}, "--fill mode=3: not a valid mode value (a number [0, 1])"),
        ({"popularity": "1"}, "--fill popularity=1: popularity is not a model input; model "),
    ],
)
def test_bad_fill_values_are_refused_before_reading(manifest, fill, message):
    with pytest.raises(InputError) as info:
        Preprocessor(manifest, fills=fill)
    assert str(info.value).startswith(message)


def test_fill_replaces_empty_cells_of_a_present_column(manifest):
    batch = _one_row_batch(time_signature=None)
    prepared = (
        Preprocessor(manifest, fills={"time_signature": "4"}).bind(batch.schema).transform(batch)
    )
    assert prepared.rejects is None
    names = [f["name"] for f in manifest["features"]]
    assert prepared.features[1, names.index("time_signature")] == 4.0


def test_text_explicit_parsed_per_distinct_value_equals_parsing_each_row():
    """CSV gives ``explicit`` as text; the preprocessor parses each distinct value once and
    gathers by row: the same values (and nulls) as the row-by-row expression."""
    from popbatch.batch.preprocess import _explicit_by_distinct_value

    from popbatch.core.features import parse_explicit

    values = [" True", "false", "FALSE ", "1", "0", "yes", None, "", "true", "2"] * 3
    got = _explicit_by_distinct_value(pa.record_batch([pa.array(values)], names=["explicit"]))
    expected = pl.DataFrame({"explicit": values}).select(parse_explicit())["explicit"]
    assert got.to_list() == expected.to_list()
    assert got.null_count() == 12  # "yes", None, "" and "2", three times each, are not flags
    flags = pa.record_batch([pa.array([True, False])], names=["explicit"])
    assert _explicit_by_distinct_value(flags) is None  # not text: cast as a number

"""The Streamlit script behind ``popbatch app``: one track, a file, the model card.

Run it with ``popbatch app`` (which calls ``streamlit run`` on this file, bound
to 127.0.0.1); the model and the run directory come in through the
environment (:data:`MODEL_ENV`, :data:`RUN_ENV`) so Streamlit's ``AppTest``
can set them too. Only this module imports Streamlit: it draws, and
:mod:`popbatch.cli.interactive` scores through ``popbatch score`` itself.
Like the CLI it is an edge: popbatch errors become one-line messages here.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import streamlit as st

from popbatch.cli import interactive
from popbatch.cli.commands.model import summary_lines
from popbatch.core.bundle import ModelBundle
from popbatch.core.errors import PopbatchError, one_line

MODEL_ENV = "POPBATCH_APP_MODEL"
RUN_ENV = "POPBATCH_APP_RUN"
#: keys of st.session_state the pages keep between reruns (tests read them too)
RESULT = "track_result"
REASONS = "track_reasons"
COUNT = "predictions"
WATERFALL = "track_waterfall"


def serve(argv: list[str] | None = None) -> None:
    """``streamlit run`` this script with ``argv`` (server options), after loading the
    model and its onnxruntime session, so the first page does not wait for them.

    ``popbatch app`` runs this; the model directory comes from :data:`MODEL_ENV`.
    """
    import sys

    from streamlit.web import cli

    directory = os.environ.get(MODEL_ENV) or None
    interactive.cached_track_scorer(directory)  # imports, verifies, makes the session
    interactive.explain_available()
    sys.argv = ["streamlit", "run", __file__, *(sys.argv[1:] if argv is None else argv)]
    cli.main()


def header(bundle: ModelBundle) -> None:
    data = bundle.manifest.get("training_data") or {}
    rows = data.get("rows")
    st.title("popbatch")
    st.caption(
        f"Model **{bundle.model_id[:12]}** · trained on {data.get('file', '?')}"
        + (f" ({rows:,} rows)" if isinstance(rows, int) else "")
        + f" · label popular = {(bundle.manifest.get('label') or {}).get('definition', '?')}"
    )


# ------------------------------------------------------------------ one track
def track_page(bundle: ModelBundle) -> None:
    fields = interactive.input_fields(bundle.manifest)
    with st.form("track"):
        values = {}
        columns = st.columns(3)
        for index, item in enumerate(fields):
            with columns[index % 3]:
                values[item.column] = field_widget(item)
        submitted = st.form_submit_button("Predict", type="primary")
    with st.expander("Or paste a row: a CSV header line and one row, any values"):
        pasted = st.text_area(
            "Row", key="pasted", placeholder="danceability,energy,...\n0.7,0.8,...",
            help="Copied from a catalog file; scored as popbatch score reads a CSV.",
        )  # fmt: skip
        if st.button("Predict the pasted row"):
            try:
                values = interactive.pasted_row(pasted)
            except PopbatchError as exc:
                st.error(one_line(exc))
                return
            submitted = True
    if submitted:
        try:
            scorer = interactive.cached_track_scorer(os.environ.get(MODEL_ENV) or None)
            st.session_state[RESULT] = scorer.score(values)
            st.session_state[COUNT] = st.session_state.get(COUNT, 0) + 1
        except PopbatchError as exc:
            st.session_state.pop(RESULT, None)
            st.session_state.pop(REASONS, None)
            st.error(one_line(exc))
            return
    result = st.session_state.get(RESULT)
    if result is None:
        return
    show_result(result)  # drawn before the reasons are worked out (~0.2-0.4 s more)
    if submitted:
        with st.spinner("Working out the reasons..."):
            try:
                st.session_state[REASONS] = interactive.explain_track(values, bundle)
            except PopbatchError as exc:
                st.session_state[REASONS] = f"explanation failed: {one_line(exc)}"
    show_reasons(st.session_state.get(REASONS))


def field_widget(item: interactive.InputField):
    key = f"in_{item.column}"
    if item.kind == "text":
        return st.text_input(item.column, value=item.default, key=key, help=item.help)
    if item.kind == "flag":
        return st.checkbox(item.column, value=item.default, key=key, help=item.help)
    if item.kind == "choice":
        return st.selectbox(
            item.column, item.options, index=item.options.index(item.default), key=key,
            help=item.help,
        )  # fmt: skip
    if item.kind == "integer":
        low = None if item.valid_min is None else int(item.valid_min)
        high = None if item.valid_max is None else int(item.valid_max)
        return st.number_input(
            item.column, min_value=low, max_value=high, value=int(item.default), step=1,
            key=key, help=item.help,
        )  # fmt: skip
    low = None if item.valid_min is None else float(item.valid_min)
    high = None if item.valid_max is None else float(item.valid_max)
    return st.number_input(
        item.column, min_value=low, max_value=high, value=float(item.default),
        step=float(item.step), format=item.number_format, key=key, help=item.help,
    )  # fmt: skip


def show_result(result: interactive.TrackResult) -> None:
    label = "popular" if result.popular else "not popular"
    columns = st.columns(3)
    columns[0].metric("Popular probability", f"{result.probability:.6f}")
    columns[1].metric("Label", label)
    columns[1].caption(
        f"probability {'≥' if result.popular else '<'} the threshold {result.threshold:.6f}"
    )
    columns[2].caption(
        f"Prediction {st.session_state.get(COUNT, 1)}, scored in {result.seconds * 1000:.0f} ms "
        "by popbatch score's own code and model"
    )
    columns = st.columns(3)
    if result.popularity is not None:
        columns[0].metric("Predicted popularity (0-100)", f"{result.popularity:.1f}")
    if result.genre is not None:
        columns[1].metric("Predicted genre", result.genre)
        if result.genre_probability is not None:
            columns[2].metric("Genre probability", f"{result.genre_probability:.3f}")
    if result.popularity is None and result.genre is None:
        st.caption("This model has no popularity or genre head (popbatch train --heads).")


def show_reasons(reasons: list[interactive.Reason] | str | None) -> None:
    if isinstance(reasons, list):
        st.subheader("Top reasons")
        st.caption("What moved the popular probability most (popbatch explain: Shapley values)")
        st.markdown("\n".join(f"- {reason.text()}" for reason in reasons))
        if isinstance(reasons, interactive.Reasons) and reasons:
            show_waterfall(reasons)
    elif isinstance(reasons, str):
        st.caption(reasons)
    else:
        st.caption("Reasons appear when this popbatch has popbatch explain.")


def show_waterfall(reasons: interactive.Reasons) -> None:
    """The reasons as a waterfall: from the average track (the base value) through each
    reason and the other features together to this track's score."""
    import altair as alt

    steps = reasons.steps()
    rows = [
        {"step": f"{i:02d} {label}", "start": start, "end": end,
         "kind": "total" if i in (0, len(steps) - 1) else ("up" if end >= start else "down")}
        for i, (label, start, end) in enumerate(steps)
    ]  # fmt: skip
    chart = (
        alt.Chart(alt.Data(values=rows))
        .mark_bar()
        .encode(
            y=alt.Y("step:N", sort=None, title=None),
            x=alt.X("start:Q", title=reasons[0].unit),
            x2="end:Q",
            color=alt.Color(
                "kind:N",
                scale=alt.Scale(
                    domain=["total", "up", "down"], range=["#4c72b0", "#55a868", "#c44e52"]
                ),
                legend=None,
            ),
        )
    )
    st.altair_chart(chart, use_container_width=True)
    st.session_state[WATERFALL] = steps


# ------------------------------------------------------------------ a file
def file_page(bundle: ModelBundle) -> None:
    limit = interactive.UPLOAD_ROW_LIMIT
    upload = st.file_uploader(
        f"A CSV or Parquet file with the model's columns (at most {limit:,} rows; "
        "popbatch score takes any size)",
        type=["csv", "parquet"],
        key="upload",
    )
    if upload is None:
        return
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    cached = st.session_state.get("upload_scored")
    if cached is None or cached[0] != digest:
        name = Path(upload.name).name or "upload.csv"
        with tempfile.TemporaryDirectory(prefix="popbatch-app-") as work:
            path = Path(work) / name  # messages then name the user's file
            path.write_bytes(data)
            try:
                scored = interactive.score_file(path, bundle, limit)
            except PopbatchError as exc:
                st.error(one_line(exc).replace(f"{work}/", ""))
                return
        st.session_state["upload_scored"] = (digest, scored)
    else:
        scored = cached[1]
    show_scored(scored, Path(upload.name).stem, bundle.threshold)


def show_scored(scored: interactive.Scored, stem: str, threshold: float) -> None:
    table = scored.table
    rejected = 0 if scored.rejects is None else scored.rejects.num_rows
    popular = int(pa.compute.sum(table.column("popular")).as_py() or 0) if table.num_rows else 0
    columns = st.columns(4)
    columns[0].metric("Scored", f"{table.num_rows:,}")
    columns[1].metric("Popular", f"{popular:,}")
    columns[2].metric("Rejected", f"{rejected:,}")
    columns[3].metric("Took", f"{scored.seconds:.2f} s")
    if rejected:
        st.subheader("Rejects")
        st.table({"reason": [r for r, _ in scored.reject_reasons()],
                  "rows": [n for _, n in scored.reject_reasons()]})  # fmt: skip
    if table.num_rows:
        st.subheader("Probabilities")
        probability = table.column("popularity_prob").to_numpy()
        # over the scores' own range (this model's all lie near its threshold), threshold included
        low = min(float(probability.min()), threshold)
        high = max(float(probability.max()), threshold)
        counts, edges = np.histogram(probability, bins=20, range=(low, high or 1.0))
        starts = [round(float(e), 6) for e in edges[:-1]]
        chart = {"probability from": starts, "tracks": counts}
        st.bar_chart(chart, x="probability from", y="tracks")
        st.caption(f"The model calls a track popular from {threshold:.6f} on.")
        st.subheader("Scores")
        st.dataframe(table, hide_index=True)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        st.download_button("Download the scored Parquet", buffer.getvalue(),
                           f"{stem}.scored.parquet", "application/octet-stream")  # fmt: skip
        text = io.BytesIO()
        pacsv.write_csv(table, text)
        st.download_button("Download as CSV", text.getvalue(), f"{stem}.scored.csv", "text/csv")


# ------------------------------------------------------------------ the model
def model_page(bundle: ModelBundle, run: str | None) -> None:
    manifest = bundle.manifest
    st.code("\n".join(summary_lines(manifest, bundle.directory, len(bundle.onnx_bytes))),
            language=None)  # fmt: skip
    heads = manifest.get("heads") or {}
    for name, entry in heads.items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if isinstance(metrics, dict) and metrics:  # the popular head's are in the card above
            st.markdown(f"**{name} head**: test metrics")
            st.json(metrics.get("test", metrics), expanded=False)
    if run:
        plots = sorted(Path(run).glob("*.png")) + sorted(Path(run).glob("plots/*.png"))
        if plots:
            st.subheader(f"Training report plots ({run})")
            for plot in plots:
                st.image(str(plot), caption=plot.name)
        else:
            st.caption(f"{run}: no plots found (a run directory made by popbatch train)")


def main() -> None:
    st.set_page_config(page_title="popbatch", layout="wide")
    try:
        bundle = interactive.cached_model(os.environ.get(MODEL_ENV) or None)
    except PopbatchError as exc:
        st.error(one_line(exc))
        st.stop()
    header(bundle)
    one, upload, card = st.tabs(["One track", "A file", "The model"])
    with one:
        track_page(bundle)
    with upload:
        file_page(bundle)
    with card:
        model_page(bundle, os.environ.get(RUN_ENV) or None)


if __name__ == "__main__":  # streamlit run (and AppTest) run the script as __main__
    main()

"""``popbatch train``: option parsing and progress only; :mod:`popbatch.models.pipeline`
does the work.

The training pipeline and stack (polars, TensorFlow, scikit-learn, xgboost) are
imported inside the command so that importing the CLI, or ``popbatch train
--help``, never loads them; the options show the defaults of
:mod:`popbatch.core.train_defaults`, which are TrainConfig's and LearnerParams'.
"""

from __future__ import annotations

from pathlib import Path

import click

from popbatch.cli.commands.options import read_options
from popbatch.cli.commands.progress import Progress
from popbatch.core import train_defaults as defaults
from popbatch.core.errors import InputError

# Where the exported model goes inside --out (model.onnx + manifest.json).
MODEL_SUBDIR = "model"

BALANCE_METHODS = ("smote", "adasyn", "undersample", "class-weight", "none")
HEADS_DEFAULT = ",".join(defaults.HEADS)


def _choice(name: str, choices: tuple[str, ...], help: str):
    """An option with a fixed set of values, the first the default."""
    return click.option(
        name, type=click.Choice(choices), default=choices[0], show_default=True, help=help
    )


@click.command("train")
@click.option(
    "--data",
    required=True,
    metavar="INPUT",
    help="Training rows: CSV or Parquet files (a glob or a directory too), or a DuckDB "
    "database with --table or --query; read as 'popbatch score' reads a catalog.",
)
@read_options
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Run directory: report.json, report.html, plots/ and stack/.",
)
@click.option(
    "--popular-above",
    default=float(defaults.DEFAULT_POPULAR_ABOVE),
    show_default=True,
    type=float,
    help="Label: popular = popularity > this.",
)
@click.option(
    "--balance",
    type=click.Choice(BALANCE_METHODS),
    default=defaults.BALANCE,
    show_default=True,
    help="Class-imbalance handling, applied to training folds only.",
)
@click.option(
    "--outliers",
    type=click.Choice(("keep", "cap", "drop")),
    default=defaults.OUTLIERS,
    show_default=True,
    help="cap: clip to the training 1st/99th percentiles (also at scoring); "
    "drop: remove them from training only.",
)
@click.option("--no-genre", is_flag=True, help="Do not use track_genre (catalogs without it).")
@click.option("--tune", is_flag=True, help="Randomized search over RF and XGB settings first.")
@click.option(
    "--tune-budget",
    default=defaults.TUNE_BUDGET_MINUTES,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Minutes the --tune search may take.",
)
@click.option(
    "--seed", default=defaults.SEED, show_default=True, type=int, help="Seed of every random step."
)
@click.option(
    "--epochs",
    default=None,
    show_default=f"{defaults.EPOCHS}, the heads' networks their own",
    type=click.IntRange(min=1),
    help="ANN epochs; given, it also caps the heads' networks (quick runs).",
)
@click.option(
    "--batch-size",
    default=defaults.BATCH_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="ANN mini-batch size.",
)
@click.option(
    "--folds",
    default=defaults.FOLDS,
    show_default=True,
    type=click.IntRange(min=2),
    help="K of the out-of-fold predictions that train the meta learner.",
)
@click.option(
    "--rf-trees",
    default=defaults.RF_TREES,
    show_default=True,
    type=click.IntRange(min=1),
    help="RF trees.",
)
@click.option(
    "--rf-depth",
    default=defaults.RF_DEPTH,
    show_default=True,
    type=click.IntRange(min=1),
    help="RF max depth.",
)
@click.option(
    "--xgb-rounds",
    default=defaults.XGB_ROUNDS,
    show_default=True,
    type=click.IntRange(min=1),
    help="XGBoost maximum rounds (early stopping on validation picks fewer).",
)
@click.option(
    "--xgb-depth",
    default=defaults.XGB_DEPTH,
    show_default=True,
    type=click.IntRange(min=1),
    help="XGBoost max tree depth.",
)
@click.option(
    "--no-export",
    is_flag=True,
    help="Write the stack only; skip the ONNX export into OUT/model.",
)
@click.option(
    "--learners",
    default=",".join(defaults.LEARNERS),
    show_default=True,
    help="Base learners of the stack, comma-separated: logistic, ann, rf, xgb.",
)
@_choice(
    "--meta-input",
    ("logit", "probability"),
    "What the meta learner reads: the base learners' logits or probabilities.",
)
@_choice(
    "--xgb-genre",
    ("target", "onehot"),
    "XGBoost reads the genre as a target encoding (fitted on training rows only) or one-hot.",
)
@click.option(
    "--cv",
    "cv",
    default=None,
    metavar="KxR",
    help="First cross-validate the whole recipe: K folds grouped by track_id, R repeats "
    "(e.g. 5x3), on the rows outside the test split; adds mean ± std to the report.",
)
@click.option(
    "--cv-jobs",
    default=defaults.CV_JOBS,
    show_default=True,
    type=click.IntRange(min=1),
    help="Parallel folds.",
)
@click.option(
    "--heads",
    default=HEADS_DEFAULT,
    show_default=True,
    metavar="LIST",
    help="Heads to train: popular (the label, always), popularity (0-100 regression), "
    "genre (from the audio features).",
)
@click.option(
    "--prior",
    "prior_columns",
    multiple=True,
    metavar="COLUMN",
    help="Catalog prior column (repeatable): each key's smoothed history (mean popularity, "
    "share popular, track count, genre mix) from the labelled rows, out of fold on training "
    f"rows. Default: {', '.join(defaults.PRIOR_COLUMNS)} (artists split on ';').",
)
@click.option(
    "--no-priors", is_flag=True, help="No catalog priors: the audio features and genre only."
)
@click.option("--quiet", is_flag=True, help="No stage lines on stderr (warnings still).")
def train(
    data: str,
    table: str | None,
    query: str | None,
    delimiter: str,
    maps: dict[str, str],
    fills: dict[str, str],
    out: Path,
    popular_above: float,
    balance: str,
    outliers: str,
    no_genre: bool,
    tune: bool,
    tune_budget: float,
    seed: int,
    epochs: int | None,
    batch_size: int,
    folds: int,
    rf_trees: int,
    rf_depth: int,
    xgb_rounds: int,
    xgb_depth: int,
    no_export: bool,
    learners: str,
    meta_input: str,
    xgb_genre: str,
    cv: str | None,
    cv_jobs: int,
    heads: str,
    prior_columns: tuple[str, ...],
    no_priors: bool,
    quiet: bool,
) -> None:
    """Train the stacked popularity model (and its heads) and write the report and stack.

    Reads DATA, splits it 70/15/15 by track_id and trains the --heads on the
    same split: popular, a stack of base learners (--learners; by default a
    logistic regression, a Keras network and a small XGBoost) under a logistic
    regression on their out-of-fold logits; popularity, a regression; genre, a
    classifier. With catalog priors (on unless --no-priors) every head also
    reads each artist's and album's labelled history, out of fold on training
    rows. Evaluates everything on the test split; with --cv, first estimates
    the whole recipe by repeated grouped cross-validation (with priors, also
    with folds grouped by album and by artist, beside the recipe without them).
    Writes OUT/report.json, OUT/report.html, OUT/plots/*.png and OUT/stack/,
    then exports to OUT/model (model.onnx, a file per extra head and
    manifest.json, parity proven) unless --no-export.
    """
    from popbatch.core.heads import parse_heads  # pyarrow: not for --help

    # Stage lines with elapsed seconds, on a terminal or not (cron and CI logs
    # read them); --quiet keeps only warnings (e.g. a SMOTE fallback).
    progress = Progress("train", quiet).stage
    chosen_heads = parse_heads(heads)  # a typo fails before TensorFlow loads
    if no_genre and "genre" in chosen_heads and heads != HEADS_DEFAULT:
        raise InputError("--heads genre learns the track_genre column; drop --no-genre")
    design = _design(learners, cv)
    from popbatch.models.quiet import import_keras_quietly

    import_keras_quietly()
    from popbatch.models.learners import LearnerParams
    from popbatch.models.pipeline import TrainConfig
    from popbatch.models.pipeline import train as run_training
    from popbatch.models.priors import PriorRecipe

    params = LearnerParams(
        epochs=epochs or defaults.EPOCHS,
        max_epochs=epochs,
        batch_size=batch_size,
        learners=design,
        meta_input=meta_input,
        genre_encoding=xgb_genre == "target",
    )
    params.rf.update(n_estimators=rf_trees, max_depth=rf_depth)
    params.xgb.update(n_estimators=xgb_rounds, max_depth=xgb_depth)
    config = TrainConfig(
        data=data,
        out=out,
        table=table,
        query=query,
        delimiter=delimiter,
        maps=maps,
        fills=fills,
        # 71.0 -> 71: the manifest's label reads as the user wrote it.
        popular_above=int(popular_above) if popular_above.is_integer() else popular_above,
        balance=balance,
        outliers=outliers,
        use_genre=not no_genre,
        tune=tune,
        tune_budget=tune_budget,
        seed=seed,
        folds=folds,
        learners=params,
        cv=cv,
        cv_jobs=cv_jobs,
        heads=chosen_heads,
        priors=PriorRecipe(_prior_columns(prior_columns, no_priors)),
    )

    result = run_training(config, progress=progress)
    stack_metrics = result.report["metrics"]["test"]["stack"]
    click.echo(
        f"wrote {result.out}: stack test ROC-AUC {_num(stack_metrics['roc_auc'])}, "
        f"PR-AUC {_num(stack_metrics['pr_auc'])}, threshold {result.stack.threshold:.4f}"
    )
    heads = result.report.get("heads", {})
    if "popularity" in heads:
        test = heads["popularity"]["metrics"]["test"]["stack"]
        click.echo(f"popularity head: test R² {test['r2']:.4f}, MAE {test['mae']:.3f}")
    if "genre" in heads:
        test = heads["genre"]["metrics"]["test"]["combined"]
        click.echo(
            f"genre head: test accuracy {test['accuracy']:.4f}, top-3 {test['top3_accuracy']:.4f}"
        )
    if not no_export:
        from popbatch.cli.commands.export import export_and_report

        progress(f"export: ONNX graph and parity proof into {out / MODEL_SUBDIR}")
        export_and_report(
            result.out, out / MODEL_SUBDIR, measure_throughput=True, progress=progress
        )


def _design(learners: str, cv: str | None) -> tuple[str, ...]:
    """Check --learners and --cv before anything slow starts."""
    from popbatch.models.stack import LEARNERS

    names = tuple(n.strip() for n in learners.split(",") if n.strip())
    unknown = [n for n in names if n not in LEARNERS]
    if unknown or not names or len(set(names)) != len(names):
        message = f"{learners!r}: name each of {', '.join(LEARNERS)} at most once"
        raise click.BadParameter(message, param_hint="--learners")
    if cv is not None:
        from popbatch.models.cv import CvSpec

        try:
            CvSpec.parse(cv)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--cv") from None
    return tuple(n for n in LEARNERS if n in names)  # the stack's fixed order


def _prior_columns(requested: tuple[str, ...], no_priors: bool) -> tuple[str, ...]:
    from popbatch.core.features import normalize_column_name

    if no_priors and requested:
        raise InputError("--prior and --no-priors contradict each other; give one")
    if no_priors:
        return ()
    chosen = [normalize_column_name(c) for c in requested] or list(defaults.PRIOR_COLUMNS)
    return tuple(dict.fromkeys(chosen))


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

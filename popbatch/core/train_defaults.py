"""The defaults of a training run, as plain constants that import nothing.

``popbatch train --help`` shows them; reading them from
:class:`popbatch.models.pipeline.TrainConfig` meant importing the training
pipeline (polars, numpy, the catalog sources: ~0.8 s) to print a help page.
``TrainConfig`` and ``LearnerParams`` hold the same values;
``tests/test_cli_basics.py`` fails when a default here, the option showing it
and the library's disagree.
"""

from __future__ import annotations

# Label: popular = popularity > this (the manifest records it).
DEFAULT_POPULAR_ABOVE = 71
BALANCE = "class-weight"
OUTLIERS = "keep"
TUNE_BUDGET_MINUTES = 5.0
SEED = 42
FOLDS = 5
CV_JOBS = 2
HEADS = ("popular", "popularity", "genre")
# Base learners (LearnerParams).
EPOCHS = 20
BATCH_SIZE = 512
RF_TREES = 5
RF_DEPTH = 5
XGB_ROUNDS = 30
XGB_DEPTH = 2
LEARNERS = ("logistic", "ann", "xgb")
# Catalog priors (popbatch.core.priors.DEFAULT_PRIOR_COLUMNS).
PRIOR_COLUMNS = ("artists", "album_name")

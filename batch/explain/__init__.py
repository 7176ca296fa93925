"""Why this score? Per-track Shapley explanations of a model bundle's heads.

One home for the explainer, in the scoring layer, so that scoring (``popbatch
explain``), training (the report's explanation plots) and export (the stored
background rows) all import it downward:

- :mod:`~popbatch.batch.explain.space`: the model side: a head's link function,
  the raw feature space an explanation lives in, background rows;
- :mod:`~popbatch.batch.explain.shapley`: the permutation Shapley estimator;
- :mod:`~popbatch.batch.explain.selection`: which rows to explain (keys, a
  ``--where`` clause, the top scores), the run itself and its output
  (``popbatch.explain``).

Importing this package imports none of them.
"""

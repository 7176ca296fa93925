"""``import popbatch.spark``: score Spark DataFrames with popbatch (needs the ``spark`` extra).

The code is :mod:`popbatch.batch.spark`; this module only gives it its public
name. Importing it imports pyspark, which nothing else of popbatch does.

>>> from popbatch.spark import local_session, score_dataframe    # doctest: +SKIP
>>> spark = local_session("local[2]")                            # doctest: +SKIP
>>> scored, rejects = score_dataframe(spark.read.parquet("catalog.parquet"))  # doctest: +SKIP
"""

from popbatch.batch.spark import local_session, score_dataframe, score_flagged, split_flagged

__all__ = ["local_session", "score_dataframe", "score_flagged", "split_flagged"]

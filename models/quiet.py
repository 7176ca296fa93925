"""TensorFlow without its noise: C++ start-up notices and Python retracing warnings.

Logs read by cron or CI should hold popbatch's stage lines, not TensorFlow's
oneDNN notices or "triggered tf.function retracing" warnings (Keras retraces
``predict`` for every new model, which stacking and cross-validation create
by the dozen; the warning says nothing a user can act on).
"""

from __future__ import annotations

import logging
import os


def import_keras_quietly(threads: int | None = None) -> None:
    """Import Keras/TensorFlow with file descriptor 2 closed to their C++ start-up
    chatter, then silence TensorFlow's Python warnings.

    ``threads`` limits TensorFlow's thread pools (cross-validation workers use 1);
    it only applies before TensorFlow's runtime starts, and is ignored after.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    tf.get_logger().setLevel(logging.ERROR)
    tf.autograph.set_verbosity(0)
    if threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # the runtime already started in this process: its pools stay

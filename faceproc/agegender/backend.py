"""The Keras backend, started quietly and kept to a worker's share of the cores."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def import_backend_quietly():
    """Import Keras (and its backend) with native stderr captured: TensorFlow's C++ start-up lines (absl,
    cuInit, oneDNN) ignore TF_CPP_MIN_LOG_LEVEL and would land on the user's terminal from every worker.
    They go to the debug log instead; Python errors still raise as usual."""
    import os
    import sys
    import tempfile

    if "keras" in sys.modules:
        return sys.modules["keras"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")  # the CUDA probe prints its lines here, not later
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode("utf-8", "replace").splitlines():
            if line.strip():
                log.debug("backend start-up: %s", line)
    return keras


def set_threads(n: int) -> None:
    """Cap TensorFlow's thread pools so several workers on one machine do not fight over the cores."""
    if not n:
        return
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(n))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except (ImportError, RuntimeError) as e:  # RuntimeError: TF already initialised
        log.debug("could not set TF threads: %s", e)

"""faceproc: find every face in photo archives, estimate age and gender, write Parquet.

The data path, one module per step: discover -> decode -> detect -> crop -> predict -> write (schema)
-> report. `faceproc.engine.annotate` runs it over folders (Ray or in-process); `faceproc.pipeline.
Annotator` is one shard through the steps; `faceproc.train` / `faceproc.evaluate` make the models.
"""

import os as _os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (cuInit, absl, oneDNN) is noise on a terminal: silenced before any
# module imports TensorFlow, in the driver and, through the inherited environment, in Ray workers.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# No call home from the libraries faceproc loads (OpenVINO's telemetry): faceproc/offline.py, docs/privacy.md.
from .offline import no_library_telemetry as _no_library_telemetry  # noqa: E402

_no_library_telemetry()


def annotate(inputs, out, cfg=None, **kwargs):
    """Annotate every image under `inputs` into the output folder `out` (see faceproc.engine.annotate)."""
    from .engine import annotate as _annotate

    return _annotate(inputs, out, cfg, **kwargs)

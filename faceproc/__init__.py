"""faceproc: find every face in photo archives, estimate age and gender, write Parquet.

The data path, one module per step: discover -> decode -> detect -> crop -> predict -> write (schema)
-> report. `faceproc.engine.annotate` runs it over folders (Ray or in-process); `faceproc.pipeline.
Annotator` is one shard through the steps; `faceproc.train` / `faceproc.evaluate` make the models.
"""

__version__ = "0.1.0"


def annotate(inputs, out, cfg=None, **kwargs):
    """Annotate every image under `inputs` into the output folder `out` (see faceproc.engine.annotate)."""
    from .engine import annotate as _annotate

    return _annotate(inputs, out, cfg, **kwargs)

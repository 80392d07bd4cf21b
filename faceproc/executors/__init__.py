"""Executors: who runs the shards of a plan (faceproc/engine.py drives them): in this process (local.py) or on
a pool of Ray actors (ray_pool.py). Both run a shard the same way, `process_shard`."""

from __future__ import annotations

import os
from typing import Any

from ..runstate import commit_shard
from ..storage import Store


def process_shard(annotator, shard, out: str | os.PathLike | Store, run_id: str) -> dict[str, Any]:
    """Annotate one shard and commit it (faceproc.runstate.commit_shard: rows first, marker last)."""
    store = out if isinstance(out, Store) else Store(out)
    return commit_shard(store, shard, annotator.annotate(shard.files, shard.shard_id, run_id))

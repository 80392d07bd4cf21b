"""Executors: who runs the shards of a plan (faceproc/engine.py drives them): in this process (local.py) or on
a pool of Ray actors (ray_pool.py). Both run a shard the same way, `process_shard`."""

from __future__ import annotations

import os
from typing import Any, Callable

from ..runstate import commit_shard
from ..storage import Store


def process_shard(annotator, shard, out: str | os.PathLike | Store, run_id: str,
                  before_commit: Callable[[], None] | None = None) -> dict[str, Any]:
    """Annotate one shard and commit it (faceproc.runstate.commit_shard: rows first, marker last).
    `before_commit`: the in-process engine's last stop check (it raises to drop the shard)."""
    store = out if isinstance(out, Store) else Store(out)
    res = annotator.annotate(shard.files, shard.shard_id, run_id)
    if before_commit is not None:
        before_commit()
    return commit_shard(store, shard, res)

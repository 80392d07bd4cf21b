"""RunRecord: manifest.json, an output folder's account of its runs, kept current while a run goes on.

It names the inputs, the settings and their fingerprint, the models and the engine, every shard's state
(done, pending, failed; compacted from which) and one history entry per run. A rerun starts from it
(faceproc/resume.py), the report shows it (faceproc/report.py), and faceproc/ownership.py knows faceproc's own
files by it. It is written whole at the start, at most every WRITE_EVERY seconds while shards finish, and at
every change of the run's state, so a crash leaves it at most a few seconds behind the shard markers (which
are what resume trusts).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .storage import Store

MANIFEST = "manifest.json"
WRITE_EVERY = 5.0  # seconds between writes while shards finish


class RunRecord:
    def __init__(self, out: Store, manifest: dict[str, Any]):
        self.out, self.manifest = out, manifest
        self._written = 0.0  # when shard_done last wrote it

    @classmethod
    def start(cls, out: Store, plan, inputs: list[str], disc, old: dict | None, done: dict, todo: list,
              run_id: str, engine: str, t_start: float) -> "RunRecord":
        """The record of a run about to execute `todo` (shards) after the committed shards `done`, written."""
        shards = {sid: {"dir": m.get("dir"), "files": m.get("files", len(m["paths"])), "state": "done",
                        "faces": m.get("faces")} for sid, m in done.items()}
        shards.update({sh.shard_id: {"dir": sh.directory, "files": len(sh.files), "state": "pending"} for sh in todo})
        rec = cls(out, {
            "run_id": run_id, "inputs": inputs, "fingerprint": plan.fingerprint, "config": plan.config.to_dict(),
            **plan.summary, "state": "running", "started": t_start, "engine": engine,
            "n_files": disc.n_files, "n_ignored_files": disc.n_ignored, "symlink_cycles": disc.cycles[:50],
            "skipped": disc.skipped(),  # not rows: other files by extension, unreadable folders, links (discover)
            "shards": shards, "history": (old or {}).get("history", []),
        })
        rec.write()
        return rec

    def write(self) -> None:
        self.out.write_text(MANIFEST, json.dumps(self.manifest, indent=1))

    @property
    def n_shards(self) -> int:
        return len(self.manifest["shards"])

    def n_done(self) -> int:
        return sum(1 for v in self.manifest["shards"].values() if v["state"] == "done")

    def _done(self, sid: str, marker: dict) -> None:
        self.manifest["shards"][sid].update(state="done", faces=marker.get("faces"), seconds=marker.get("seconds"),
                                            node=marker.get("node", "local"))

    def shard_done(self, summary: dict) -> None:
        """A shard committed (its marker `summary`); written when the last write is WRITE_EVERY seconds old."""
        self._done(summary["shard"], summary)
        if time.time() - self._written > WRITE_EVERY:
            self.write()
            self._written = time.time()

    def interrupted(self, committed: dict[str, dict], error: str | None = None) -> None:
        """A stop (`error`: None), or an error that ended the run (then the state is `failed`, with the error's
        line: a model that cannot load, a node that cannot read the inputs, a full disk). `committed`: the
        markers on disk (runstate.committed_shards): a stop that fell between a shard's marker and its
        `shard_done` leaves the shard committed, and the manifest says so too."""
        shards = self.manifest["shards"]
        for sid in [s for s, v in shards.items() if v.get("state") == "done" and s not in committed]:
            del shards[sid]  # replaced by a compaction that the stop fell into, or found broken
        for sid, marker in committed.items():
            if sid not in shards and marker.get("replaces"):  # that compaction's (or a re-cut's) new shard
                shards[sid] = _replacing(marker)
            elif sid in shards and shards[sid].get("state") != "done":
                self._done(sid, marker)
        self.manifest.update(state="interrupted" if error is None else "failed", finished=time.time())
        if error is not None:
            self.manifest["error"] = error
        self.write()

    def compacted(self, before: dict[str, dict], after: dict[str, dict]) -> None:
        """Committed shards `before` a compaction, and `after` it (runstate.compact_when_due)."""
        shards = self.manifest["shards"]
        for sid in set(before) - set(after):
            shards.pop(sid, None)
        for sid in set(after) - set(before):
            shards[sid] = _replacing(after[sid])

    def finish(self, failed: list[dict], run: dict) -> None:
        """The run's end (after the previews, so its seconds count them): failed shards marked, its history
        entry `run` appended, written."""
        for f in failed:
            self.manifest["shards"][f["shard"]].update(state="failed", error=f["error"])
        self.manifest["state"] = "complete" if not failed else "incomplete"
        self.manifest["finished"] = time.time()
        self.manifest["history"].append(run)
        self.write()


def _replacing(marker: dict) -> dict:
    """The manifest's entry of a shard that replaces others (a compaction's merge, a re-cut), from its marker."""
    return {"dir": marker.get("dir"), "files": marker.get("files"), "state": "done", "faces": marker.get("faces"),
            "compacted_from": marker["replaces"]}

"""Per-file progress from Ray actors that return whole shards (the terminal's line, faceproc/progress.py).

A worker actor runs one shard at a time and cannot answer a poll meanwhile, so each worker sends its shard's
counts (files read, faces found) to a small board actor, at most twice a second, fire-and-forget; a thread
of the driver takes what the board holds twice a second and hands it to the progress line. Only a terminal
run starts a board; without one the workers send nothing. A lost message or a dead board costs only the
line's accuracy until the shard commits: the committed shard's own counts replace what was sent.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("faceproc")

SEND_EVERY = 0.5  # seconds between a worker's messages
POLL_EVERY = 0.5  # seconds between the driver's polls


def _board_class(ray):
    @ray.remote(num_cpus=0, max_restarts=0)
    class ProgressBoard:
        """shard id -> (files, faces) so far; the latest message of a shard wins."""

        def __init__(self):
            self.latest: dict[str, tuple[int, int]] = {}

        def put(self, shard_id: str, files: int, faces: int) -> None:
            self.latest[shard_id] = (files, faces)

        def take(self) -> dict[str, tuple[int, int]]:
            latest, self.latest = self.latest, {}
            return latest

    return ProgressBoard


class RayBoard:
    """The board actor and the driver thread that polls it into `progress` (a ProgressLine)."""

    def __init__(self, ray, progress):
        self.ray, self.progress = ray, progress
        self.actor = _board_class(ray).remote()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="faceproc-progress", daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.stopped.wait(POLL_EVERY):
            try:
                latest = self.ray.get(self.actor.take.remote(), timeout=5)
            except Exception as e:  # noqa: BLE001 (the board is gone: the line moves per shard from here on)
                log.debug("progress board: %s", e)
                return
            for shard_id, (files, faces) in latest.items():
                self.progress.shard_status(shard_id, files, faces)

    def stop(self) -> None:
        """Idempotent; before Ray goes down."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.thread.join(timeout=6)
        try:
            self.ray.kill(self.actor)
        except Exception:  # noqa: BLE001 (already dead, or Ray going down)
            pass


def tally_for(board, shard_id: str):
    """A worker's per-file hook for one shard (pipeline.Annotator.on_file): counts sent to `board`, or None."""
    if board is None:
        return None
    from ..progress import ShardTally

    return ShardTally(lambda sid, files, faces: board.put.remote(sid, files, faces), shard_id, SEND_EVERY)

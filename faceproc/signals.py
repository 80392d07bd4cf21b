"""Ctrl-C and SIGTERM stop a run cleanly, whatever the engine and whatever the shell left behind.

A run started in the background by a script inherits SIGINT *ignored* (POSIX shells do that for `cmd &`),
and Python then never installs its KeyboardInterrupt handler: `kill -INT` did nothing and the run went on
to `complete`. So faceproc installs its own handler for both signals while a run lasts: the first signal
raises `Stop` (a KeyboardInterrupt) in the main thread, which the engine turns into a clean stop (finished
shards kept, the shard in flight dropped, manifest `interrupted`, exit 130). A second signal while that
clean-up runs ends the process at once (exit 130): the commit protocol makes that as safe as a SIGKILL,
and the next run repairs it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(KeyboardInterrupt):
    """Raised in the main thread by the first SIGINT/SIGTERM of a run."""


_state = {"depth": 0, "stopping": False, "saved": {}}


def _handler(signum, frame):
    if _state["stopping"]:
        os.write(2, b"faceproc: second signal, stopping at once (the next run repairs what was left)\n")
        os._exit(130)
    _state["stopping"] = True
    raise Stop(signal.Signals(signum).name)


class stop_on_signals(contextlib.ContextDecorator):
    """While inside (nested uses are fine): SIGINT and SIGTERM raise `Stop`, once; the caller's handlers (or
    Ray's, which ray.init installs for SIGTERM) are put back at the outermost exit. `raise_as`: a stop that
    leaves this block unhandled becomes that exception (one clear line instead of a traceback)."""

    def __init__(self, raise_as: type[Exception] | None = None):
        self.raise_as = raise_as

    def _recreate_cm(self):  # a fresh instance per decorated call (calls may nest or come from threads)
        return type(self)(self.raise_as)

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            self.active = False  # only the main thread can take signals
            return self
        self.active = True
        if _state["depth"] == 0:
            _state["stopping"] = False
            _state["saved"] = {s: signal.getsignal(s) for s in SIGNALS}
        _state["depth"] += 1
        for s in SIGNALS:  # again on every entry: ray.init replaces the SIGTERM handler in between
            signal.signal(s, _handler)
        return self

    def __exit__(self, *exc):
        if not self.active:
            return False
        _state["depth"] -= 1
        if _state["depth"] == 0:
            for s, old in _state["saved"].items():
                signal.signal(s, old if old is not None else signal.SIG_DFL)
            _state["saved"] = {}
        if self.raise_as is not None and exc[0] is not None and issubclass(exc[0], KeyboardInterrupt):
            raise self.raise_as("stopped: finished shards are kept; run the same command again to finish the "
                                "rest.") from None
        return False


def stopping() -> bool:
    """A stop signal arrived during the current run (clean-up code may want to be brief)."""
    return _state["stopping"]

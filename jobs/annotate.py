"""Ray job entry point: `ray job submit --working-dir . -- python jobs/annotate.py --input DIR --output OUT`.

Argument parsing, then one library call. Under `ray job submit`, RAY_ADDRESS is set and the library
attaches to that cluster; a rerun with the same --output finishes what an interrupted run left.
"""

import argparse
import json
import logging
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the working dir

from faceproc.config import Config, ConfigError  # noqa: E402
from faceproc.detect import DetectorUnavailable  # noqa: E402
from faceproc.engine import (ClusterUnreachable, DiskFull, Interrupted, OutputLocked, OutputNotWritable, RunConfigMismatch,  # noqa: E402
                             annotate)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input", action="append", required=True, help="input folder (repeatable)")
    p.add_argument("--output", required=True)
    p.add_argument("--model", default=None, help="frozen | unfrozen | path to .keras")
    p.add_argument("--config", default=None, help="YAML config")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--previews", type=int, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--random-init", action="store_true", help="untrained model (tests/benchmarks only)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = Config.load(a.config, {"model.variant": a.model, "model.batch_size": a.batch_size,
                                     "run.shard_size": a.shard_size, "run.workers": a.workers,
                                     "run.previews": a.previews, "model.random_init": a.random_init or None})
        rep = annotate(a.input, a.output, cfg, engine="ray", force=a.force, limit=a.limit, progress=False)
    except DiskFull as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    except (FileNotFoundError, OutputNotWritable, RunConfigMismatch, OutputLocked, ConfigError, ClusterUnreachable,
            DetectorUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    summary = {k: rep[k] for k in ("files", "faces", "failed_files", "status_counts", "throughput")}
    summary["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(summary, indent=1))
    return 2 if rep.get("failed_shards") else 0


if __name__ == "__main__":
    sys.exit(main())

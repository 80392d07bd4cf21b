"""Ray job entry point: `ray job submit --working-dir . --runtime-env jobs/runtime-env.yaml -- python
jobs/annotate.py --input DIR --output OUT` (the runtime env keeps virtualenvs and outputs out of the upload).

The same command, options and exit codes as `faceproc annotate` (faceproc/cli.py), on the Ray engine, with
the summary as JSON. Under `ray job submit`, RAY_ADDRESS is set and the library attaches to that cluster;
a rerun with the same --output finishes what an interrupted run left.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the working dir

from faceproc.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["annotate", "--engine", "ray", "--json", *sys.argv[1:]], prog_name="jobs/annotate.py")

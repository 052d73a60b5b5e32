"""Runs the `notify` command line as `python -m workers`."""

import sys

from workers.cli import main

sys.exit(main())

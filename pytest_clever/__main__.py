"""``python -m pytest_clever``: the saved-runs command line (see cli.py)."""

import sys

from pytest_clever.cli import main

sys.exit(main())

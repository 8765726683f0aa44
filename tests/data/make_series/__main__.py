"""``python -m tests.data.make_series``: the command line of :mod:`tests.data.make_series.cli`."""

import sys
from pathlib import Path

if not __package__:  # run as ``python tests/data/make_series ...``: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.data.make_series.cli import main

sys.exit(main())

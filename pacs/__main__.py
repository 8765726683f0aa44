"""``python -m pacs`` runs the command line."""

import sys

from pacs.cli import main

sys.exit(main())

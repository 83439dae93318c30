"""``python -m newsrnn`` runs the CLI."""

import sys

from newsrnn.cli import main

sys.exit(main())

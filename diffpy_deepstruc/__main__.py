"""``python -m diffpy_deepstruc`` runs the ``deepstruc`` command line."""

import sys

from .cli import main

sys.exit(main())

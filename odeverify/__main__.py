"""``python -m odeverify``."""

import sys

from .cli import main

sys.exit(main())

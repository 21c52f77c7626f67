"""``python -m specdec.distill <stage> ...``."""

import sys

from .cli import main

sys.exit(main())

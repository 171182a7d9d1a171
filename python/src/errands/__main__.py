"""``python -m errands worker module:app``."""

import sys

from .cli import main

sys.exit(main())

"""``python -m bot`` is the same as ``paylink``."""

import sys

from bot.cli import main

sys.exit(main())

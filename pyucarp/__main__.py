"""``python -m pyucarp``: the same as the ``pyucarp`` command."""

import sys

from .cli import main

sys.exit(main())

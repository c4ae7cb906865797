"""``python -m neonsign``: the ``neonsign`` command."""

import sys

from .cli import main

sys.exit(main())

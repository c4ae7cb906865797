"""``python -m neonsign.cli``: the ``neonsign`` command."""

import sys

from . import main

sys.exit(main())

"""``python -m runtime``: run one function replica (see :mod:`runtime.server`)."""

import sys

from runtime.server import main

sys.exit(main())

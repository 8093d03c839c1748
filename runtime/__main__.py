"""``python -m runtime``: run one function replica (see :mod:`runtime.replica.server`)."""

import sys

from runtime.replica.server import main

sys.exit(main())

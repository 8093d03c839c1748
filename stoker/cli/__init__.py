"""The ``stoker`` command: every subcommand, one output module, one :class:`~stoker.cli.output.UsageError`.

:mod:`stoker.cli.main` parses the command line and runs the management commands against a gateway; ``queue``,
``secret``, ``build`` (and ``base-image``), ``new`` (:mod:`stoker.cli.scaffold`) and SDK app deploys
(:mod:`stoker.cli.appfile`) have modules of their own, imported only when their command runs.
"""

from stoker.cli.main import main

__all__ = ["main"]

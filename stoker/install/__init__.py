"""``stoker install`` and ``stoker uninstall``: the platform on Compose, a Swarm stack or Kubernetes, rendered from one
set of values (:class:`stoker.install.values.Values`) and applied or removed (docs/install.md)."""

"""stoker: serverless Python functions on containers.

Handlers import what they return from here: ``from stoker import Response``.
"""

from stoker.handler import Context, Event, Response

__version__ = "0.1.0"

__all__ = ["Context", "Event", "Response", "__version__"]

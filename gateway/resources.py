"""One Starlette route per path, whatever methods it answers.

Starlette answers a method a route does not take with 405 and ``Allow`` listing that route's methods; with one
``Route`` per method the first route of the path wins, so ``PATCH /system/functions`` was told ``Allow: GET, HEAD``
although POST, PUT and DELETE work too. A resource is one route that dispatches on the method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


def resource(path: str, **handlers: Handler) -> Route:
    """A route for ``path`` whose methods are the keyword names (``GET=..., POST=...``); HEAD is answered by GET."""

    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(handlers))

"""One Starlette route per path, whatever methods it answers.

Starlette answers a method a route does not take with 405 and ``Allow`` listing that route's methods; with one
``Route`` per method the first route of the path wins, so ``PATCH /system/functions`` was told ``Allow: GET, HEAD``
although POST, PUT and DELETE work too. A resource is one route that dispatches on the method.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


class _Anything(Convertor[str]):
    """Like Starlette's ``path``, but also across line breaks (its ``.*`` stops at one): a name holding a CR or LF
    then reaches the handler, which refuses it with a clear 400, instead of matching no route at all (404)."""

    regex = "[\\s\\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anything", _Anything())


def resource(path: str, **handlers: Handler) -> Route:
    """A route for ``path`` whose methods are the keyword names (``GET=..., POST=...``); HEAD is answered by GET."""

    async def dispatch(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return Route(path, dispatch, methods=list(handlers))

"""``/system/namespace/{name}``: create, read, change and remove function namespaces, as faas-provider's routes do
(faas-cli's ``namespace create|get|update|remove`` and the go-sdk send these).

``POST /system/namespace/`` creates (201; 409 when it exists), ``GET`` reads (200 ``{name, labels, annotations}``;
404), ``PUT`` replaces labels and annotations (202; 404), ``DELETE`` removes (202; 404; 409 while functions or
secrets are in it, and for the default namespace, which always exists). Names are DNS-1123 labels, refused with 400
otherwise, and a name in the body must match the one in the URL. Where namespaces live:
:mod:`runtime.backends.namespaces`.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.jsonbody import JsonLimits, read_json
from gateway.resources import resource
from runtime.backends.base import Backend
from runtime.backends.namespaces import FunctionNamespace, ManagesNamespaces, NamespaceStore, implicit
from stoker.errors import Conflict, NotFound, Unsupported
from stoker.names import DEFAULT_NAMESPACE, validate_name

LIST_CAP = 20  # names quoted in a 409 message


class NamespaceAPI:
    def __init__(self, backend: Backend, limits: JsonLimits) -> None:
        self.backend = backend
        self.limits = limits
        self._lock = asyncio.Lock()  # one change at a time: the exists-then-save checks below stay true

    def routes(self) -> list[Route]:
        return [
            resource("/system/namespace/", POST=self.create),
            resource("/system/namespace/{name}", GET=self.get, POST=self.create, PUT=self.update, DELETE=self.delete),
        ]

    async def names(self) -> list[str]:
        """Every namespace: the default, those functions are in, and those created (``GET /system/namespaces``)."""
        stored: list[str] = []
        if isinstance(self.backend, ManagesNamespaces):
            stored = await asyncio.to_thread(self.backend.namespace_store.names)
        return sorted({*self.backend.namespaces(), *stored})

    def _store(self) -> NamespaceStore:
        if not isinstance(self.backend, ManagesNamespaces):
            only = ", ".join(self.backend.namespaces())
            raise Unsupported(f"the {self.backend.name} backend serves the namespace {only} only; it cannot be changed")
        return self.backend.namespace_store

    async def _find(self, name: str) -> FunctionNamespace | None:
        if isinstance(self.backend, ManagesNamespaces):
            stored = await asyncio.to_thread(self.backend.namespace_store.get, name)
            if stored is not None:
                return stored
        return implicit(name) if name in self.backend.namespaces() else None

    async def _body(self, request: Request, path_name: str) -> FunctionNamespace:
        return FunctionNamespace.from_json(await read_json(request, self.limits), path_name)

    async def get(self, request: Request) -> Response:
        name = validate_name(request.path_params["name"], "namespace")
        found = await self._find(name)
        if found is None:
            raise NotFound(f"namespace {name!r} not found")
        return JSONResponse(found.to_json())

    async def create(self, request: Request) -> Response:
        path_name = request.path_params.get("name", "")
        if path_name:
            validate_name(path_name, "namespace")
        namespace = await self._body(request, path_name)
        store = self._store()
        async with self._lock:
            if await self._find(namespace.name) is not None:
                raise Conflict(f"namespace {namespace.name!r} already exists; use PUT to change it")
            await asyncio.to_thread(store.save, namespace)
        return Response(status_code=201)

    async def update(self, request: Request) -> Response:
        name = validate_name(request.path_params["name"], "namespace")
        namespace = await self._body(request, name)
        store = self._store()
        async with self._lock:
            if await self._find(name) is None:
                raise NotFound(f"namespace {name!r} not found")
            await asyncio.to_thread(store.save, namespace)
        return Response(status_code=202)

    async def delete(self, request: Request) -> Response:
        name = validate_name(request.path_params["name"], "namespace")
        body = await read_json(request, self.limits, {})
        if body != {}:
            FunctionNamespace.from_json(body, name)  # faas-cli sends {name, labels}: the name must match the URL
        store = self._store()
        if name == DEFAULT_NAMESPACE:
            raise Conflict(f"the default namespace {DEFAULT_NAMESPACE!r} always exists; it cannot be removed")
        async with self._lock:
            if await self._find(name) is None:
                raise NotFound(f"namespace {name!r} not found")
            functions = [r.deployment.service for r in self.backend.functions(name)]
            secrets = await asyncio.to_thread(self.backend.secrets.names, name)
            if functions or secrets:
                held = [*(f"function {f}" for f in functions), *(f"secret {s}" for s in secrets)]
                more = f" and {len(held) - LIST_CAP} more" if len(held) > LIST_CAP else ""
                raise Conflict(
                    f"namespace {name!r} is not empty ({', '.join(held[:LIST_CAP])}{more}); remove those first"
                )
            await asyncio.to_thread(store.delete, name)
        return Response(status_code=202)

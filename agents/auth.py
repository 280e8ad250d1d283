"""Bearer-token check for every endpoint but health.

The token comes as ``Authorization: Bearer <token>`` or as ``X-Talbench-Token: <token>`` (which
survives proxies that consume Authorization); either matching is enough.  Compared in constant
time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from talbench.agents import wire

TOKEN_HEADER_ALT = wire.TOKEN_HEADER_ALT

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_tokens(request: web.Request) -> list[str]:
    tokens = []
    authorization = request.headers.get(wire.TOKEN_HEADER, "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        tokens.append(value.strip())
    alt = request.headers.get(TOKEN_HEADER_ALT, "").strip()
    if alt:
        tokens.append(alt)
    return tokens


def token_matches(expected: str, presented: Iterable[str]) -> bool:
    want = expected.encode()
    ok = False
    for token in presented:
        # A header's bytes that are not UTF-8 arrive as lone surrogates (surrogateescape): encode
        # them back rather than fail; such a token never matches.
        ok |= hmac.compare_digest(want, token.encode("utf-8", "surrogatepass"))  # no short-circuit: constant work
    return ok


def auth_middleware(token: str, *, open_paths: frozenset[str]) -> Middleware:
    if not token:
        raise ValueError("the agent token must not be empty")

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in open_paths and not token_matches(token, presented_tokens(request)):
            raise web.HTTPUnauthorized(reason="missing or wrong token")
        return await handler(request)

    return check_token

"""Who may subscribe: the one place every stream request is authorised.

Until the platform's identity work lands (bearer tokens, JWT ES256, a `dashboard` role), the
gateway serves whoever reaches it, like the gRPC services do today: keep it on a network only
trusted clients reach. Then this dependency verifies the token (AUTH_JWKS_FILE, AUTH_ISSUER,
AUTH_AUDIENCE) and requires a role that may read the streams; the routes do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request


@dataclass(frozen=True)
class Reader:
    """The caller of a stream request."""

    subject: str
    roles: tuple[str, ...] = ()


ANONYMOUS = Reader("anonymous")


async def authorise_reader(request: Request) -> Reader:
    """A FastAPI dependency of every stream route (read-only: the gateway writes nothing)."""
    return ANONYMOUS

"""Who may subscribe: the one place every request for data is authenticated and authorised.

Callers prove who they are with the platform's bearer tokens (the issuer and keys of the gRPC
services, verified by servicekit.identity.TokenVerifier), sent either
- as `Authorization: Bearer <token>` (curl, dashboard tools, the benchmark), or
- as the `SESSION_COOKIE` cookie, which `POST /session` sets from a bearer token sent in the
  Authorization header: browsers' EventSource cannot send headers, but it sends cookies.

The cookie holds the token itself (HttpOnly, Secure, SameSite=Strict, expiring
with the token): it is verified on every request like a header, so key rotation, retirement and
expiry apply to it at once, and a gateway restart or another gateway instance keeps it valid.
Reading is all the gateway does: roles `operator` and `dashboard` read every municipality, a
`climate-officer` only their own (their token's partner); docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from fastapi import HTTPException, Request

from servicekit.identity import (
    CLIMATE_OFFICER,
    DASHBOARD,
    OPERATOR,
    Principal,
    TokenVerifier,
    Unauthenticated,
)

SESSION_COOKIE = "gateway_session"
SESSION_COOKIE_PATH = "/"
READER_ROLES = (OPERATOR, DASHBOARD, CLIMATE_OFFICER)
# Roles that read every municipality; any other reader is confined to their own.
ALL_MUNICIPALITIES = (OPERATOR, DASHBOARD)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="stream-gateway"'}


@dataclass(frozen=True)
class Reader:
    """The authenticated caller of a request for data, and the token it came with."""

    principal: Principal
    token: str
    expires_at: int  # the token's exp, seconds since the epoch

    @property
    def confined_to(self) -> str | None:
        """The one municipality this reader may read, or None for all of them."""
        if self.principal.has_role(*ALL_MUNICIPALITIES):
            return None
        return self.principal.partner_id

    def municipality(self, asked: str | None) -> str:
        """The municipality filter to apply: what was asked, within what the reader may read."""
        own = self.confined_to
        if own is None:
            return asked or ""
        if asked and asked != own:
            raise HTTPException(403, "a climate officer reads their own municipality only")
        return own


def bearer_token(request: Request, *, cookie: bool = True) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "the authorization header is not 'Bearer <token>'", CHALLENGE)
        return token.strip()
    return request.cookies.get(SESSION_COOKIE) if cookie else None


def authenticate(verifier: TokenVerifier, token: str | None) -> Reader:
    """The reader a token names: 401 without a valid token, 403 without a reading role."""
    if not token:
        raise HTTPException(
            401,
            "no credentials: send 'Authorization: Bearer <token>' or sign in with POST /session",
            CHALLENGE,
        )
    try:
        principal = verifier.verify(token)
    except Unauthenticated as error:
        raise HTTPException(401, str(error), CHALLENGE) from error
    if not principal.has_role(*READER_ROLES):
        raise HTTPException(403, f"{principal.subject} may not read the streams")
    if not principal.has_role(*ALL_MUNICIPALITIES) and not principal.partner_id:
        raise HTTPException(403, "a climate officer's token names no municipality")
    # Verified just above; read again only for the expiry the session cookie takes on.
    expires_at = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    return Reader(principal, token, expires_at)


async def authorise_reader(request: Request) -> Reader:
    """A FastAPI dependency of every route that serves data (read-only: the gateway writes
    nothing). The app's state holds the token verifier."""
    verifier: TokenVerifier = request.app.state.tokens
    return authenticate(verifier, bearer_token(request))

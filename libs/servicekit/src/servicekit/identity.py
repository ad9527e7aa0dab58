"""Who is calling, and may they: authentication and per-method authorisation for gRPC.

Two kinds of callers (docs/security.md):
- other services, on the mutual-TLS listener: identified by their certificate's common name;
- people and partners, on the TLS listener, with a bearer token (JWT, ES256) from the
  platform's issuer: `sub`, `roles`, and `partner`, the partner they act for. Keys are read
  from a JWKS file, chosen by the token's `kid`, and re-read when the file changes, so keys
  rotate without a restart.

Every method has an `Access` rule: the roles and services that may call it (anything not
listed is refused). The rule admits the caller to the method; whether they may touch a
particular vehicle, hub or municipality is the handler's check, through `current_principal()`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt

from servicekit.errors import PermissionDenied

log = logging.getLogger(__name__)

# Roles carried by tokens.
OPERATOR = "operator"  # the platform's operations team: everything, for every partner
FLEET_MANAGER = "fleet-manager"  # a partner's fleet: its own vehicles only
CARRIER = "carrier"  # a carrier partner: collections as itself
RESIDENT = "resident"  # the residents' app: drop-off codes and deposits, with a quota
CLIMATE_OFFICER = "climate-officer"  # a municipality's climate team: its own inventory
DASHBOARD = "dashboard"  # dashboards: read-only views
ROLES = (OPERATOR, FLEET_MANAGER, CARRIER, RESIDENT, CLIMATE_OFFICER, DASHBOARD)

# Methods anyone may call without credentials: liveness and readiness only.
ANONYMOUS_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
REFLECTION_PREFIX = "/grpc.reflection."
TOKEN_ALGORITHMS = ["ES256"]
CLOCK_SKEW_S = 30


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = frozenset()
    partner_id: str = ""
    service: str = ""  # set when the caller is a service, authenticated by its certificate

    def has_role(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)

    @property
    def is_operator(self) -> bool:
        return OPERATOR in self.roles


@dataclass(frozen=True)
class Access:
    """Who may call one method."""

    roles: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    # What the handler checks on top, for the docs' method table.
    scope: str = ""

    def admits(self, principal: Principal) -> bool:
        if principal.service:
            return principal.service in self.services
        return principal.has_role(*self.roles)


def allow(*roles: str, services: Iterable[str] = (), scope: str = "") -> Access:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")
    return Access(frozenset(roles), frozenset(services), scope)


# Method name -> rule, for one gRPC service. Keys are the short method names.
AccessPolicy = Mapping[str, Access]

_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def current_principal() -> Principal:
    """The authenticated caller of the gRPC call being handled."""
    return _current.get()


def require_partner(principal: Principal, partner_id: str, what: str) -> None:
    """Operators act for every partner; everyone else only for their own."""
    if principal.is_operator or (principal.partner_id and principal.partner_id == partner_id):
        return
    raise PermissionDenied(f"{what} belongs to another partner than the caller's")


class Unauthenticated(Exception):
    """Missing or bad credentials; the message says which, never the token itself."""


class TokenVerifier:
    """Verifies bearer tokens against the keys of a JWKS file, re-reading it when it changes."""

    def __init__(self, jwks_file: str, issuer: str, audience: str) -> None:
        self.jwks_file = Path(jwks_file)
        self.issuer = issuer
        self.audience = audience
        self._keys: dict[str, Any] = {}
        self._loaded_stamp: tuple[float, int] | None = None
        self._reload()

    def _reload(self) -> None:
        status = os.stat(self.jwks_file)
        stamp = (status.st_mtime, status.st_size)
        if stamp == self._loaded_stamp:
            return
        key_set = jwt.PyJWKSet.from_dict(json.loads(self.jwks_file.read_text()))
        self._keys = {key.key_id: key for key in key_set.keys if key.key_id}
        self._loaded_stamp = stamp
        log.info("token keys loaded", extra={"key_ids": sorted(self._keys)})

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise Unauthenticated("the bearer token is not a JWT") from error
        kid = header.get("kid")
        # A stat per call: keys added or retired take effect at once, without a restart.
        self._reload()
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("the bearer token is signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=TOKEN_ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("the bearer token has expired") from error
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"the bearer token is not valid: {error}") from error
        roles = claims.get("roles", [])
        partner = claims.get("partner", "")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated("the bearer token's roles are not a list of names")
        if not isinstance(partner, str):
            raise Unauthenticated("the bearer token's partner is not a name")
        return Principal(subject=str(claims["sub"]), roles=frozenset(roles), partner_id=partner)


def _bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for name, value in metadata or ():
        if name == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization header is not 'Bearer <token>'")
            return token.strip()
    return None


def _certificate_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    names = list(context.auth_context().get("x509_common_name", ()))
    return names[0].decode() if names else None


@dataclass
class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call except health checks and applies the method's Access rule:
    UNAUTHENTICATED without valid credentials, PERMISSION_DENIED without the right."""

    verifier: TokenVerifier
    policies: dict[str, Access] = field(default_factory=dict)  # full method path -> rule

    def add_policy(self, service_full_name: str, policy: AccessPolicy) -> None:
        for method, access in policy.items():
            self.policies[f"/{service_full_name}/{method}"] = access

    def _authenticate(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Principal | str:
        """The caller, or the reason to refuse them (UNAUTHENTICATED first, then DENIED)."""
        try:
            token = _bearer_token(context.invocation_metadata())
            if token is not None:
                principal = self.verifier.verify(token)
            else:
                service = _certificate_name(context)
                if service is None:
                    raise Unauthenticated("no credentials: send 'authorization: Bearer <token>'")
                principal = Principal(subject=f"service:{service}", service=service)
        except Unauthenticated as error:
            return str(error)
        return principal

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method = details.method
        if handler is None or method in ANONYMOUS_METHODS:
            return handler
        # Reflection only describes the API: any authenticated caller may use it.
        access = None if method.startswith(REFLECTION_PREFIX) else self.policies.get(method)
        return _guarded(handler, method, access, self._authenticate)


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    access: Access | None,
    authenticate: Callable[[str, grpc.aio.ServicerContext[Any, Any]], Principal | str],
) -> grpc.RpcMethodHandler[Any, Any]:
    reflection = method.startswith(REFLECTION_PREFIX)

    async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        found = authenticate(method, context)
        if isinstance(found, str):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, found)
        assert isinstance(found, Principal)
        if not reflection and (access is None or not access.admits(found)):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"{found.subject} may not call {method}"
            )
        _current.set(found)

    def wrap_unary(inner: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await admit(context)
            return await inner(request, context)

        return call

    def wrap_streaming(inner: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await admit(context)
            async for response in inner(request, context):
                yield response

        return call

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap_streaming(handler.unary_stream), **serializers
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        wrap_streaming(handler.stream_stream), **serializers
    )


@dataclass(frozen=True)
class TlsFiles:
    """A service's certificate and key, and the CA that signs the platform's services."""

    certificate: bytes
    private_key: bytes
    authority: bytes

    @classmethod
    def read(cls, cert_file: str, key_file: str, ca_file: str) -> TlsFiles:
        return cls(
            Path(cert_file).read_bytes(), Path(key_file).read_bytes(), Path(ca_file).read_bytes()
        )

    def server(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate)],
            root_certificates=self.authority,
            require_client_auth=require_client_certificate,
        )

    def client(self) -> grpc.ChannelCredentials:
        """This service calling another: the CA to trust and its own certificate."""
        return grpc.ssl_channel_credentials(self.authority, self.private_key, self.certificate)


def token_credentials(ca_file: str | Path, token: str) -> grpc.ChannelCredentials:
    """A person's or partner's client: trust the platform's CA, send the bearer token."""
    return grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(Path(ca_file).read_bytes()),
        grpc.access_token_call_credentials(token),
    )

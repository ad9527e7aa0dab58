"""gRPC aio server bootstrap: health, reflection, tracing, metrics and error-to-status mapping."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from prometheus_client import CollectorRegistry, Counter

from servicekit.errors import InvalidArgument, ServiceError
from servicekit.identity import AccessPolicy, AuthInterceptor, TlsFiles, TokenVerifier

log = logging.getLogger(__name__)

Registrar = Callable[[grpc.aio.Server], None]


def _status_for(error: ServiceError) -> Any:
    status = status_pb2.Status(code=error.status_code.value[0], message=error.message)
    if isinstance(error, InvalidArgument):
        details = any_pb2.Any()
        details.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field, description=text)
                    for field, text in error.violations
                ]
            )
        )
        status.details.append(details)
    return rpc_status.to_status(status)


class _ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Turns ServiceError into its status code (with BadRequest details for a bad field), any
    other exception into INTERNAL without leaking internals, and counts calls per code."""

    def __init__(self, calls: Counter) -> None:
        self.calls = calls

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is not None and handler.unary_stream is not None:
            return self._server_streaming(handler, details.method)
        if handler is None or handler.unary_unary is None:
            return handler
        inner: Any = handler.unary_unary
        method = details.method

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._mapped(method, request, context):
                return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _server_streaming(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The same mapping for a server-streaming method: an error raised while streaming ends
        the stream with its status, after the messages already sent."""
        inner: Any = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._mapped(method, request, context):
                async for response in inner(request, context):
                    yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    @contextlib.asynccontextmanager
    async def _mapped(
        self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        """Runs a call: refuses undecodable requests, maps errors to statuses, counts codes."""
        calls = self.calls
        if isinstance(request, Undecodable):
            calls.labels(method, "INVALID_ARGUMENT").inc()
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message"
            )
        try:
            yield
        except ServiceError as error:
            calls.labels(method, error.status_code.name).inc()
            status = _status_for(error)
            await context.abort(status.code, status.details, status.trailing_metadata)
        except grpc.aio.AbortError:
            calls.labels(method, "ABORTED_BY_HANDLER").inc()
            raise
        except Exception:
            calls.labels(method, "INTERNAL").inc()
            log.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        calls.labels(method, "OK").inc()


class Undecodable:
    """Stands for request bytes that are not the method's message (answered INVALID_ARGUMENT;
    gRPC would otherwise answer a failed parse with a bare error the caller cannot act on)."""


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    parse = deserialize

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:  # whatever the parser raises, the bytes are the caller's fault
            return Undecodable()

    return tolerant


@dataclass(frozen=True)
class Listeners:
    """Where a service listens (docs/security.md): TLS for callers with tokens, mutual TLS for
    other services, and plaintext for the health service alone."""

    host: str
    port: int
    mtls_port: int | None = None
    health_port: int | None = None


class GrpcServer:
    """A gRPC aio server with the platform's standard equipment."""

    def __init__(
        self,
        *,
        services: Sequence[tuple[str, AccessPolicy]],
        registrars: Sequence[Registrar],
        metrics_registry: CollectorRegistry,
        tls: TlsFiles,
        tokens: TokenVerifier,
        reflection_enabled: bool = True,
    ) -> None:
        calls = Counter(
            "grpc_server_handled",
            "gRPC calls handled, by method and status code",
            ["grpc_method", "grpc_code"],
            registry=metrics_registry,
        )
        self.tls = tls
        self.auth = AuthInterceptor(tokens)
        for service_name, policy in services:
            self.auth.add_policy(service_name, policy)
        # The auth check comes before error mapping, so a refusal is never counted as a fault.
        self.server = grpc.aio.server(
            interceptors=[aio_server_interceptor(), self.auth, _ErrorMappingInterceptor(calls)]  # type: ignore[no-untyped-call]
        )
        for register in registrars:
            register(self.server)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # Probes that cannot speak TLS get a server of their own with nothing but health on it.
        self.health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
        self.service_names = [name for name, _ in services]
        if reflection_enabled:
            reflection.enable_server_reflection(
                [
                    *self.service_names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ],
                self.server,
            )
        self.port = 0
        self.mtls_port: int | None = None
        self.health_port: int | None = None

    async def start(self, listeners: Listeners) -> int:
        self.port = self._listen(
            self.server,
            listeners.host,
            listeners.port,
            self.tls.server(require_client_certificate=False),
        )
        if listeners.mtls_port is not None:
            self.mtls_port = self._listen(
                self.server,
                listeners.host,
                listeners.mtls_port,
                self.tls.server(require_client_certificate=True),
            )
        await self.server.start()
        if listeners.health_port is not None:
            self.health_port = self._listen(
                self.health_server, listeners.host, listeners.health_port, None
            )
            await self.health_server.start()
        await self.set_serving(True)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        """The health status of the server and of each of its services (readiness decides)."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    @staticmethod
    def _listen(
        server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None
    ) -> int:
        address = f"{host}:{port}"
        bound = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
        if bound == 0:
            raise RuntimeError(f"cannot listen on {address}")
        return bound

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace_s)
        await self.health_server.stop(0)


def secure_channel(target: str, credentials: grpc.ChannelCredentials) -> grpc.aio.Channel:
    """A client channel, traced so the trace crosses the call."""
    interceptors = aio_client_interceptors()  # type: ignore[no-untyped-call]
    return grpc.aio.secure_channel(target, credentials, interceptors=interceptors)


def insecure_channel(target: str) -> grpc.aio.Channel:
    """A plaintext channel: only the health listener answers on one."""
    return grpc.aio.insecure_channel(target)


def bad_request_field(error: grpc.aio.AioRpcError) -> str | None:
    """The field named by an INVALID_ARGUMENT status, for clients and tests."""
    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            for violation in bad_request.field_violations:
                return str(violation.field)
    return None

"""Composition root of stream-gateway: settings, the Kafka tails and the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import Field

from servicekit.identity import TokenVerifier
from servicekit.settings import ServiceSettings, load_settings
from servicekit.telemetry import setup_tracing
from servicekit.topics import TopicNames
from stream_gateway.adapters.kafka import KafkaClients
from stream_gateway.entrypoints.http import BoundedSendH11Protocol, create_app
from stream_gateway.handlers import GatewayMetrics, Limits, StreamGateway

log = logging.getLogger(__name__)


class GatewaySettings(ServiceSettings):
    service_name: str = "stream-gateway"
    # The gateway keeps no database and serves no gRPC: it only reads topics.
    database_url: str = ""
    grpc_port: int = Field(default=0, ge=0, le=65535)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8090, ge=0, le=65535)
    # Clients served at once; one more is answered 503 with Retry-After.
    max_clients: int = Field(default=1000, ge=1)
    # Events waiting for one client (states queued; records of the replay log behind a client
    # that had reached the live end); one more and the client gets a stream-error and is
    # disconnected (it resumes from its last event when it is ready).
    client_queue_size: int = Field(default=10_000, ge=1)
    # Each event stream's replay log of recent rendered events, shared by its clients: a
    # client that resumes or falls behind within it is served from memory, an older position
    # from the broker. At most this many records, and this many bytes.
    replay_log_records: int = Field(default=50_000, ge=1)
    replay_log_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    # Clients at the live end get what arrived within this time in one write.
    batch_interval_s: float = Field(default=0.05, ge=0)
    heartbeat_s: float = Field(default=15.0, gt=0)
    # Clients reading behind the tail at once (each with a Kafka consumer of its own).
    max_catch_ups: int = Field(default=16, ge=1)
    # A send that a client does not take within this time ends its connection.
    send_timeout_s: float = Field(default=30.0, gt=0)


class GatewayRuntime:
    def __init__(self, settings: GatewaySettings) -> None:
        # HTTPS with the service's certificate, and the platform's tokens: as for gRPC, there
        # is no plaintext mode and no anonymous reader.
        settings.require_identity()
        self.settings = settings
        self.tokens = TokenVerifier(
            settings.auth_jwks_file, settings.auth_issuer, settings.auth_audience
        )
        setup_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)
        self.metrics = CollectorRegistry()
        self.gateway = StreamGateway(
            KafkaClients(settings),
            TopicNames(settings.topic_namespace),
            Limits(
                max_clients=settings.max_clients,
                queue_size=settings.client_queue_size,
                heartbeat_s=settings.heartbeat_s,
                max_catch_ups=settings.max_catch_ups,
                replay_records=settings.replay_log_records,
                replay_bytes=settings.replay_log_bytes,
                batch_interval_s=settings.batch_interval_s,
            ),
            GatewayMetrics(self.metrics),
        )
        self.app = create_app(self.gateway, self.metrics, self.tokens, settings.send_timeout_s)
        self.http_port = 0
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.settings.http_host}:{self.http_port}"

    async def start(self) -> None:
        """Starts the topics' tails, then listens (streams wait until the tails caught up)."""
        await self.gateway.start()
        config = uvicorn.Config(
            self.app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ssl_certfile=self.settings.tls_cert_file,
            ssl_keyfile=self.settings.tls_key_file,
            http=BoundedSendH11Protocol,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        if not server.started:
            raise RuntimeError(
                f"cannot listen on {self.settings.http_host}:{self.settings.http_port}"
            )
        self.http_port = server.servers[0].sockets[0].getsockname()[1]
        self._server = server
        self._serving = asyncio.create_task(server.main_loop(), name="http")

    async def stop(self) -> None:
        if self._server is not None:
            self.gateway.close_streams()
            self._server.should_exit = True
            if self._serving is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serving
            await self._server.shutdown()
            self._server = None
        await self.gateway.stop()


def build(**overrides: object) -> GatewayRuntime:
    return GatewayRuntime(load_settings(GatewaySettings, **overrides))

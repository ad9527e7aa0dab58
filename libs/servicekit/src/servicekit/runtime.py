"""A service's runtime: database, Kafka, outbox relay and gRPC server, started and stopped
together in one event loop.

The broker need not be up for a service to start: the database is migrated and gRPC served
first, and Kafka (topics, producer, outbox relay, consumers) is connected in the background,
retried until the broker answers. What gRPC calls write meanwhile waits in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.database import Database, Migration
from servicekit.grpc_server import GrpcServer, Listeners, Registrar
from servicekit.identity import AccessPolicy, TlsFiles, TokenVerifier
from servicekit.kafka import (
    BatchConsumer,
    BatchHandler,
    ConsumerMetrics,
    PartitionsHook,
    Producer,
    Throttle,
    client_options,
    install_repeated_log_filter,
)
from servicekit.logs import setup_logging
from servicekit.outbox import OutboxRelay
from servicekit.read_model import ChangeHook, ReadModel, ReadModelMetrics
from servicekit.readiness import Readiness
from servicekit.settings import ServiceSettings
from servicekit.telemetry import setup_tracing
from servicekit.topics import TopicNames, ensure_topics

log = logging.getLogger(__name__)

MessageT = TypeVar("MessageT", bound=Message)
EventT = TypeVar("EventT")


_batch_session: ContextVar[AsyncSession | None] = ContextVar("batch_session", default=None)


class UnitOfWork:
    """One database transaction; after it commits, the outbox relay is woken.

    Inside `batch()` (a consumer's batch), units of work share the batch's transaction, each in
    a savepoint: one that fails is rolled back alone, and the batch commits once.
    """

    def __init__(self, database: Database, relay: OutboxRelay) -> None:
        self.database = database
        self.relay = relay

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        batch_session = _batch_session.get()
        if batch_session is not None:
            async with batch_session.begin_nested():
                yield batch_session
            return
        async with self.database.transaction() as session:
            yield session
        self.relay.notify()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction, for queries; within a batch, the batch's own session."""
        batch_session = _batch_session.get()
        if batch_session is not None:
            yield batch_session
            return
        async with self.database.read() as session:
            yield session

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        async with self.database.transaction() as session:
            token = _batch_session.set(session)
            try:
                yield
            finally:
                _batch_session.reset(token)
        self.relay.notify()


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        migrations: Sequence[Migration],
        grpc_services: Sequence[tuple[str, AccessPolicy]],
    ) -> None:
        settings.require_identity()
        self.settings = settings
        # The service's own certificate: it serves with it and shows it when it calls others.
        self.tls = TlsFiles.read(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file
        )
        self.tokens = TokenVerifier(
            settings.auth_jwks_file, settings.auth_issuer, settings.auth_audience
        )
        setup_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)
        self.metrics = CollectorRegistry()
        self.consumer_metrics = ConsumerMetrics(self.metrics)
        self.names = TopicNames(settings.topic_namespace)
        self.database = Database(settings.database_url)
        self.kafka_connection = client_options(settings)
        self.producer = Producer(self.kafka_connection, settings.service_name)
        self.consumers: list[BatchConsumer[Any, Any]] = []
        self.read_models: list[ReadModel[Any]] = []
        self._read_models_started: list[ReadModel[Any]] = []
        self.read_model_metrics = ReadModelMetrics(self.metrics)
        self.relay = OutboxRelay(
            self.database,
            self.producer,
            settings.outbox_poll_interval_s,
            log_interval_s=settings.log_repeat_interval_s,
        )
        self.unit_of_work = UnitOfWork(self.database, self.relay)
        self.migrations = list(migrations)
        self.grpc_services = list(grpc_services)
        self.registrars: list[Registrar] = []
        self.startup_hooks: list[Callable[[], Awaitable[None]]] = []
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self.stopping_hooks: list[Callable[[], None]] = []
        self.grpc: GrpcServer | None = None
        self.grpc_port = 0
        self.grpc_mtls_port: int | None = None
        self.health_port: int | None = None
        self.readiness = Readiness(
            self.producer,
            self.consumers,
            self.read_models,
            broker_unreachable_s=settings.readiness_broker_unreachable_s,
            consumer_stalled_s=settings.readiness_consumer_stalled_s,
            registry=self.metrics,
        )
        # Set once topics, producer, relay and consumers are all up.
        self.kafka_connected = asyncio.Event()
        self._hooks_done = asyncio.Event()
        self._kafka_task: asyncio.Task[None] | None = None

    def topic(self, name: str) -> str:
        return self.names(name)

    def consume_batches(
        self,
        topic: str,
        group_id: str,
        message_type: type[MessageT],
        handle_batch: BatchHandler[EventT],
        convert: Callable[[MessageT], EventT],
        on_assigned: PartitionsHook | None = None,
        on_revoked: PartitionsHook | None = None,
        subject_of: Callable[[MessageT], str] | None = None,
    ) -> BatchConsumer[MessageT, EventT]:
        """Consumes a topic batch by batch, each batch in one transaction (see BatchConsumer).
        `convert` makes the handler's value of each message as it is decoded; `subject_of`
        names the id each record's key must equal (the topic's key)."""
        consumer = BatchConsumer(
            connection=self.kafka_connection,
            client_id=self.settings.service_name,
            producer=self.producer,
            names=self.names,
            topic=topic,
            group_id=group_id,
            message_type=message_type,
            handle_batch=handle_batch,
            subject_of=subject_of,
            convert=convert,
            batch_scope=self.unit_of_work.batch,
            max_attempts=self.settings.consumer_max_attempts,
            retry_backoff_s=self.settings.consumer_retry_backoff_s,
            batch_size=self.settings.consumer_batch_size,
            max_subjects_per_batch=self.settings.consumer_max_subjects_per_batch,
            partition_fetch_bytes=self.settings.consumer_partition_fetch_bytes,
            fetch_bytes=self.settings.consumer_fetch_bytes,
            metrics=self.consumer_metrics,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
            log_interval_s=self.settings.log_repeat_interval_s,
        )
        self.consumers.append(consumer)
        return consumer

    def read_model(
        self,
        topic: str,
        message_type: type[MessageT],
        revision_of: Callable[[MessageT], int],
        on_change: ChangeHook[MessageT] | None = None,
    ) -> ReadModel[MessageT]:
        """A local copy of a compacted topic (see servicekit.read_model); the service starts
        serving only once every read model has caught up."""
        model = ReadModel(
            topic=self.names(topic),
            message_type=message_type,
            revision_of=revision_of,
            database=self.database,
            connection=self.kafka_connection,
            client_id=self.settings.service_name,
            on_change=on_change,
            metrics=self.read_model_metrics,
        )
        self.read_models.append(model)
        return model

    def add_grpc(self, registrar: Registrar) -> None:
        self.registrars.append(registrar)

    def on_startup(self, hook: Callable[[], Awaitable[None]]) -> None:
        self.startup_hooks.append(hook)

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Runs after the gRPC server stopped taking calls (e.g. to close client channels)."""
        self.shutdown_hooks.append(hook)

    def on_stopping(self, hook: Callable[[], None]) -> None:
        """Runs first when the service stops, e.g. to end long-lived streams, which would
        otherwise hold the gRPC server's stop for its whole grace period."""
        self.stopping_hooks.append(hook)

    async def start(self) -> None:
        """Migrates the database, runs the start-up hooks, connects Kafka if the broker answers
        (in the background otherwise) and serves gRPC."""
        await self.database.migrate(self.migrations)
        self.readiness.start(self._apply_readiness)
        producer_attempted, clients_attempted = asyncio.Event(), asyncio.Event()
        self._kafka_task = asyncio.create_task(
            self._connect_kafka(producer_attempted, clients_attempted), name="connect kafka"
        )
        # A broker that answers is connected before the start-up hooks run (they may publish
        # through the outbox and wait for it) and the consumers and read models before gRPC
        # is served, as a service's callers and tests expect; one that is down delays nothing.
        await producer_attempted.wait()
        for hook in self.startup_hooks:
            await hook()
        self._hooks_done.set()
        await clients_attempted.wait()
        # Ready means answering from whole read models: with the broker up, serve after they
        # caught up. Without it, gRPC answers from the copies stored at the last run, and the
        # health status says NOT_SERVING until they caught up.
        await self._wait_read_models()
        # The status the service starts serving with is today's, not the last periodic check's.
        await self.readiness.check_broker()
        self.readiness.evaluate()
        self.grpc = GrpcServer(
            services=self.grpc_services,
            registrars=self.registrars,
            metrics_registry=self.metrics,
            tls=self.tls,
            tokens=self.tokens,
            reflection_enabled=self.settings.grpc_reflection,
        )
        self.grpc_port = await self.grpc.start(
            Listeners(
                self.settings.grpc_host,
                self.settings.grpc_port,
                self.settings.grpc_mtls_port,
                self.settings.health_port,
            )
        )
        self.grpc_mtls_port = self.grpc.mtls_port
        self.health_port = self.grpc.health_port
        await self.grpc.set_serving(self.readiness.serving)
        if self.settings.metrics_port:
            start_http_server(
                self.settings.metrics_port, self.settings.metrics_address, registry=self.metrics
            )

    async def _connect_kafka(
        self, producer_attempted: asyncio.Event, clients_attempted: asyncio.Event
    ) -> None:
        """Creates the topics, starts the producer and the outbox relay, then (once the start-up
        hooks ran) the read models and, once they caught up, the consumers, each step retried
        (with backoff, logged once per interval) until the broker answers."""
        throttle = Throttle(self.settings.log_repeat_interval_s)
        delay_s = 0.5
        topics_ready = False
        while True:
            try:
                if not topics_ready:
                    await ensure_topics(self.kafka_connection, self.names.all_specs())
                    topics_ready = True
                if not self.producer.started:
                    await self.producer.start()
                self.relay.start()
                producer_attempted.set()
                await self._hooks_done.wait()
                # Read models first, and the consumers once they caught up: a handler reading
                # one (a municipality's method, a carrier's authorisation) then finds it whole
                # from the first batch on, instead of retrying until it is.
                for model in self.read_models:
                    if model not in self._read_models_started:
                        await model.start()
                        self._read_models_started.append(model)
                await self._wait_read_models()
                for consumer in self.consumers:
                    if not consumer.started:
                        await consumer.start()
            except Exception as error:
                producer_attempted.set()
                clients_attempted.set()
                if throttle.due():
                    log.warning(
                        "Kafka is not reachable; gRPC is served and Kafka is connected when "
                        "the broker answers",
                        extra={
                            "error": f"{type(error).__name__}: {error}",
                            "suppressed": throttle.take_suppressed(),
                        },
                    )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
                continue
            if delay_s > 0.5:
                log.info("Kafka connected")
            self.kafka_connected.set()
            clients_attempted.set()
            return

    async def _wait_read_models(self) -> None:
        """Until every read model caught up, or the broker has been away longer than readiness
        allows (then the service serves, NOT_SERVING, rather than not at all)."""
        for model in self.read_models:
            while not model.caught_up.is_set():
                if self.readiness.unreachable_seconds() > self.readiness.broker_unreachable_s:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(model.caught_up.wait(), 1.0)

    async def _apply_readiness(self, serving: bool) -> None:
        if self.grpc is not None:
            await self.grpc.set_serving(serving)

    async def stop(self) -> None:
        # Stop taking calls first, then let the relay publish what is committed.
        for ending in self.stopping_hooks:
            ending()
        await self.readiness.stop()
        if self.grpc is not None:
            await self.grpc.stop()
        if self._kafka_task is not None and not self._kafka_task.done():
            self._kafka_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._kafka_task
        for consumer in self.consumers:
            await consumer.stop()
        for model in self.read_models:
            await model.stop()
        for hook in reversed(self.shutdown_hooks):
            await hook()
        await self.relay.stop()
        await self.producer.stop()
        await self.database.dispose()


def settle_garbage_collector() -> None:
    """Keeps the cyclic garbage collector off what start-up loaded.

    Libraries and generated code leave hundreds of thousands of long-lived objects; a batch of
    thousands of events makes the collector run often, and each full collection would walk them
    all again. Frozen, they are left out; a higher first threshold lets a batch's short-lived
    objects go by reference counting before a collection starts.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def run(build: Callable[[], ServiceRuntime]) -> None:
    """Entry point of `python -m <service>`: runs until SIGTERM or SIGINT, then stops cleanly."""

    async def main() -> None:
        runtime = build()
        setup_logging(runtime.settings.service_name, runtime.settings.log_level)
        install_repeated_log_filter(runtime.settings.log_repeat_interval_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await runtime.start()
        settle_garbage_collector()
        log.info(
            "listening",
            extra={
                "grpc": f"{runtime.settings.grpc_host}:{runtime.grpc_port}",
                "grpc_mtls_port": runtime.grpc_mtls_port,
                "health_port": runtime.health_port,
                "metrics_port": runtime.settings.metrics_port,
            },
        )
        print(
            f"{runtime.settings.service_name} gRPC (TLS) on "
            f"{runtime.settings.grpc_host}:{runtime.grpc_port}"
            + (f", mTLS on :{runtime.grpc_mtls_port}" if runtime.grpc_mtls_port else "")
            + (f", health on :{runtime.health_port}" if runtime.health_port else "")
            + (
                f", metrics on :{runtime.settings.metrics_port}"
                if runtime.settings.metrics_port
                else ""
            ),
            flush=True,
        )
        await stop.wait()
        log.info("stopping")
        await runtime.stop()

    try:
        _run_loop(main())
    except KeyboardInterrupt:  # second Ctrl-C during shutdown
        sys.exit(130)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Runs the service on uvloop where it exists (libuv's event loop: every batch, statement
    and record crosses the loop several times, and it costs less per crossing than asyncio's
    own), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)

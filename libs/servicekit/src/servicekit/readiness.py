"""Readiness that tells the truth: whether the broker answers and every consumer moves on.

The gRPC health status of a service (servicekit.grpc_server) follows `Readiness.serving`: it
is NOT_SERVING while a read model has not caught up with its changelog, and once the broker has
been unreachable, or a consumer has held a batch without handling any of it, for longer than
the configured thresholds; SERVING again once all of that is over. The gRPC API itself keeps
answering meanwhile: calls that write go to the outbox, which is published when the broker is
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from servicekit.kafka import BatchConsumer, Producer
from servicekit.read_model import ReadModel

log = logging.getLogger(__name__)

# How long one probe of the broker may take before it counts as failed.
PROBE_TIMEOUT_S = 5.0

StatusHook = Callable[[bool], Awaitable[None]]


class Readiness:
    def __init__(
        self,
        producer: Producer,
        consumers: Sequence[BatchConsumer[Any, Any]],
        read_models: Sequence[ReadModel[Any]] = (),
        *,
        broker_unreachable_s: float,
        consumer_stalled_s: float,
        registry: CollectorRegistry,
        check_interval_s: float = 1.0,
    ) -> None:
        self.producer = producer
        self.consumers = consumers
        self.read_models = read_models
        self.broker_unreachable_s = broker_unreachable_s
        self.consumer_stalled_s = consumer_stalled_s
        self.check_interval_s = check_interval_s
        # Not reached yet: the clock runs from the start, as for a broker lost later.
        self._unreachable_since: float | None = time.monotonic()
        self._serving = True
        self._problems: list[str] = []
        self._task: asyncio.Task[None] | None = None
        Gauge(
            "kafka_broker_unreachable_seconds",
            "Seconds since the broker last answered (0: it answers)",
            registry=registry,
        ).set_function(self.unreachable_seconds)
        Gauge(
            "service_serving",
            "1 while the health status is SERVING, 0 while NOT_SERVING",
            registry=registry,
        ).set_function(lambda: 1.0 if self._serving else 0.0)

    @property
    def serving(self) -> bool:
        return self._serving

    @property
    def problems(self) -> list[str]:
        """Why the service is not serving (empty while it is)."""
        return list(self._problems)

    def unreachable_seconds(self) -> float:
        if self._unreachable_since is None:
            return 0.0
        return time.monotonic() - self._unreachable_since

    async def check_broker(self) -> None:
        """Asks the broker for its metadata through the service's producer (once it has
        connected at all)."""
        reachable = False
        if self.producer.started:
            try:
                await asyncio.wait_for(self.producer.probe(), PROBE_TIMEOUT_S)
                reachable = True
            except Exception:  # any failure to answer counts as unreachable
                reachable = False
        if reachable:
            self._unreachable_since = None
        elif self._unreachable_since is None:
            self._unreachable_since = time.monotonic()

    def evaluate(self) -> bool:
        """Works out the status from the last probe and the consumers; True when it changed."""
        problems = [
            f"the read model of {model.topic} has not caught up"
            for model in self.read_models
            if not model.caught_up.is_set()
        ]
        unreachable = self.unreachable_seconds()
        if unreachable > self.broker_unreachable_s:
            problems.append(f"the Kafka broker has not answered for {unreachable:.0f} s")
        for consumer in self.consumers:
            stalled = consumer.stalled_seconds()
            if stalled > self.consumer_stalled_s:
                problems.append(
                    f"the consumer of {consumer.topic} has made no progress for {stalled:.0f} s"
                )
        self._problems = problems
        serving = not problems
        changed = serving != self._serving
        self._serving = serving
        return changed

    def start(self, on_change: StatusHook) -> None:
        self._task = asyncio.create_task(self._run(on_change), name="readiness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, on_change: StatusHook) -> None:
        while True:
            await self.check_broker()
            if self.evaluate():
                if self._serving:
                    log.info("serving again")
                else:
                    log.warning("not serving", extra={"problems": self._problems})
                await on_change(self._serving)
            await asyncio.sleep(self.check_interval_s)

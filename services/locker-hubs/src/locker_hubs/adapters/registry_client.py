"""Client of partner-registry: may a carrier collect waste at a hub?"""

from __future__ import annotations

import grpc

from greenpartners.registry.v1 import registry_pb2, registry_pb2_grpc
from servicekit.errors import Unavailable
from servicekit.grpc_server import secure_channel

# Codes that mean the registry could not answer now, so the caller may retry later.
_NOT_REACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class PartnerRegistryClient:
    """One channel for the service's life (gRPC reconnects it by itself); `close` at shutdown."""

    def __init__(
        self, target: str, credentials: grpc.ChannelCredentials, timeout_s: float = 5.0
    ) -> None:
        self.target = target
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    async def is_authorized(self, carrier_partner_id: str, hub_id: str) -> tuple[bool, str]:
        """Whether the registry authorises the carrier at the hub, and its reason when not."""
        if self._channel is None:
            self._channel = secure_channel(self.target, self.credentials)
        stub = registry_pb2_grpc.PartnerRegistryServiceStub(self._channel)
        try:
            response = await stub.CheckCarrierAuthorization(
                registry_pb2.CheckCarrierAuthorizationRequest(
                    carrier_partner_id=carrier_partner_id, hub_id=hub_id
                ),
                timeout=self.timeout_s,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _NOT_REACHABLE:
                raise Unavailable(f"partner registry unavailable: {error.code().name}") from error
            raise
        return response.authorized, response.reason

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

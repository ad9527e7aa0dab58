"""Shared runtime of the Green Partnerships Platform services.

Settings, Kafka (protobuf codec, outbox relay, idempotent consumers, dead letters), the gRPC
server bootstrap, telemetry, logging and the database live here once, so that every service
has the same mechanics.
"""

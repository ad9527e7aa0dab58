"""gRPC and Kafka entrypoints of fleet-telemetry."""

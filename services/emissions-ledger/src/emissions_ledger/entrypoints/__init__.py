"""gRPC and Kafka entrypoints of emissions-ledger."""

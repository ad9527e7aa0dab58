"""gRPC entrypoint of partner-registry."""

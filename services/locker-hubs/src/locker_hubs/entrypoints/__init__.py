"""gRPC entrypoint of locker-hubs."""

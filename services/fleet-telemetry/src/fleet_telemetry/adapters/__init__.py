"""Database repositories and event mapping of fleet-telemetry."""

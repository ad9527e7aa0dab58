"""Database repositories, event mapping and clients of other services for locker-hubs."""

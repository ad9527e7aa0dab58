"""Database repository, seed data and event mapping of partner-registry."""

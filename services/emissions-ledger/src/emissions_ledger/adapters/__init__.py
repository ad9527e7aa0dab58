"""Database, data files and event mapping of emissions-ledger."""

"""Emissions ledger: the Covenant of Mayors CO2 inventory fed by the platform's events."""

"""Locker hubs service: MoLo Hubs boxes, drop-off codes, waste deposits and carrier collections."""

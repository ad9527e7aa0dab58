"""Wrong drop-off codes: a caller who keeps guessing is locked out, a hub under a guessing
attack slows down.

Codes have 8 digits and a hub holds a few dozen open ones, so each guess has about one chance
in a million. Unlimited, an account could try thousands a minute; with these limits one
account gets CALLER_FAILURES guesses per CALLER_LOCKOUT, and a hub answers at most one wrong
guess per backoff step once HUB_FAILURES came within HUB_WINDOW, whoever sends them. The
counts live in the process: each replica counts its own (docs/security.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

CALLER_FAILURES = 5
CALLER_LOCKOUT = timedelta(minutes=15)
HUB_FAILURES = 20
HUB_WINDOW = timedelta(minutes=10)
HUB_MAX_BACKOFF = timedelta(seconds=60)
# Keys remembered at most; the oldest are forgotten first (bounded memory under attack).
MAX_TRACKED = 100_000


@dataclass
class FailedAttempts:
    _by_caller: dict[str, deque[datetime]] = field(default_factory=dict)
    _by_hub: dict[str, deque[datetime]] = field(default_factory=dict)

    def refusal(self, hub_id: str, caller: str, now: datetime) -> timedelta | None:
        """How long the caller must wait before trying a code at this hub, or None."""
        mine = _recent(self._by_caller, caller, now - CALLER_LOCKOUT)
        if len(mine) >= CALLER_FAILURES:
            return mine[0] + CALLER_LOCKOUT - now
        hub = _recent(self._by_hub, hub_id, now - HUB_WINDOW)
        if len(hub) >= HUB_FAILURES:
            backoff = min(timedelta(seconds=2 ** (len(hub) - HUB_FAILURES)), HUB_MAX_BACKOFF)
            if now < hub[-1] + backoff:
                return hub[-1] + backoff - now
        return None

    def failed(self, hub_id: str, caller: str, now: datetime) -> None:
        for counts, key in ((self._by_caller, caller), (self._by_hub, hub_id)):
            times = counts.pop(key, None) or deque(maxlen=max(CALLER_FAILURES, HUB_FAILURES) * 4)
            times.append(now)
            counts[key] = times  # re-inserted: the dict's order is least recently failed first
            if len(counts) > MAX_TRACKED:
                del counts[next(iter(counts))]


def _recent(counts: dict[str, deque[datetime]], key: str, since: datetime) -> deque[datetime]:
    times = counts.get(key)
    if times is None:
        return deque()
    while times and times[0] <= since:
        times.popleft()
    return times

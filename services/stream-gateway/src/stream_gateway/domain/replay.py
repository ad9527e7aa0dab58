"""The recent records of a topic, in the order the gateway's tail read them, each with the
topic's position just after it: a bounded log that every subscriber of a stream reads from.

A subscriber is a cursor into the log (a sequence number), not a queue: a record is kept once
however many subscribers still have to send it. A client whose position lies within the log
(a resume with Last-Event-ID, a client that fell behind) is served from it; an older position
needs the broker. Positions are vectors (the next offset of every partition), and the tail
interleaves partitions, so a client's position need not be one of the positions in the log:
`first_unseen` finds where its unseen records begin, and `Catch` follows it record by record
until its position equals the log's, after which it shares the log's events and their ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")

# A position as the log keeps it: the next offset of each of the log's partitions, in order.
Vector = tuple[int, ...]


@dataclass(slots=True, eq=False)
class Logged(Generic[Item]):
    seq: int
    partition: int
    offset: int
    # The topic's position just after this record.
    after: Vector
    item: Item
    # What the record counts against the log's byte bound (`ReplayLog.resize` updates it).
    size: int


class ReplayLog(Generic[Item]):
    """The last records of a topic, at most `max_records` and `max_bytes` (the oldest leave
    first). Records get consecutive sequence numbers; the log holds [first_seq, end_seq)."""

    def __init__(
        self,
        partitions: Sequence[int],
        start: Mapping[int, int],
        max_records: int,
        max_bytes: int,
    ) -> None:
        if max_records < 1:
            raise ValueError("the log must hold at least one record")
        self.partitions = tuple(sorted(partitions))
        self.index = {partition: i for i, partition in enumerate(self.partitions)}
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._slots: list[Logged[Item] | None] = [None] * max_records
        self.first_seq = 0
        self.end_seq = 0
        self.bytes = 0
        # The position just before the first record held.
        self.start: Vector = self.vector(start)

    def __len__(self) -> int:
        return self.end_seq - self.first_seq

    def vector(self, position: Mapping[int, int]) -> Vector:
        """A position (partition -> next offset) as the log writes it; partitions it lacks are
        at 0, partitions the topic does not have are left out."""
        return tuple(position.get(partition, 0) for partition in self.partitions)

    def append(self, partition: int, offset: int, after: Vector, item: Item, size: int) -> None:
        """Adds the record the tail read; the oldest records leave while a bound is exceeded."""
        if self.end_seq - self.first_seq == self.max_records:
            self._evict()
        self._slots[self.end_seq % self.max_records] = Logged(
            self.end_seq, partition, offset, after, item, size
        )
        self.end_seq += 1
        self.bytes += size
        while self.bytes > self.max_bytes and self.end_seq - self.first_seq > 1:
            self._evict()

    def resize(self, logged: Logged[Item], size: int) -> None:
        """A record now takes `size` bytes (say, rendered); the bound applies at the next
        append, so that a reader never sees records leave while it takes them."""
        if logged.seq >= self.first_seq:
            self.bytes += size - logged.size
        logged.size = size

    def _evict(self) -> None:
        slot = self.first_seq % self.max_records
        oldest = self._slots[slot]
        assert oldest is not None
        self._slots[slot] = None
        self.start = oldest.after
        self.bytes -= oldest.size
        self.first_seq += 1

    def get(self, seq: int) -> Logged[Item]:
        logged = self._slots[seq % self.max_records]
        assert logged is not None and self.first_seq <= seq < self.end_seq, seq
        return logged

    def range(self, start: int, stop: int) -> list[Logged[Item]]:
        """The records [start, stop), which must be held."""
        assert self.first_seq <= start <= stop <= self.end_seq, (start, stop)
        size = self.max_records
        begin, end = start % size, stop % size
        if stop == start:
            return []
        held = self._slots[begin:end] if begin < end else self._slots[begin:] + self._slots[:end]
        return held  # type: ignore[return-value]  # every slot in [start, stop) is filled

    def position_before(self, seq: int) -> Vector:
        """The position just before record `seq` (first_seq <= seq <= end_seq)."""
        return self.start if seq == self.first_seq else self.get(seq - 1).after

    def covers(self, position: Vector) -> bool:
        """Whether every record after `position` that the tail has read is still held: the
        position is at or after the log's start in every partition."""
        return all(mine >= first for mine, first in zip(position, self.start, strict=True))

    def first_unseen(self, position: Vector) -> int:
        """The sequence number of the first record held at or after `position` (end_seq when
        there is none); the position must be covered. The positions after the records only
        grow, so "every record up to here is before `position`" holds for a prefix: a binary
        search finds its end."""
        low, high = self.first_seq, self.end_seq
        while low < high:
            middle = (low + high) // 2
            if _at_or_before(self.get(middle).after, position):
                low = middle + 1
            else:
                high = middle
        return low


def _at_or_before(after: Vector, position: Vector) -> bool:
    return all(a <= p for a, p in zip(after, position, strict=True))


class Catch:
    """A client's own position while it reads records of the log that it may partly have
    (its position is not one of the log's): `take` says whether a record is new to it and moves
    the position past it; `caught` says when the position became the log's own."""

    def __init__(self, index: Mapping[int, int], position: Vector) -> None:
        self.index = index
        self.position = list(position)

    def take(self, logged: Logged[Any]) -> bool:
        i = self.index[logged.partition]
        if logged.offset < self.position[i]:
            return False
        self.position[i] = logged.offset + 1
        return True

    def caught(self, logged: Logged[Any]) -> bool:
        """Whether, after `logged`, the client's position is the log's position there."""
        return tuple(self.position) == logged.after

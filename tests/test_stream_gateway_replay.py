"""The gateway's replay log on its own: bounds, and where a client's position lies in it."""

from __future__ import annotations

import itertools
import random

from stream_gateway.domain.replay import Catch, ReplayLog


def interleaved(counts: dict[int, int], seed: int = 7) -> list[tuple[int, int]]:
    """(partition, offset) of `counts[p]` records per partition, partitions interleaved as a
    tail reads them: in order within each partition."""
    rng = random.Random(seed)
    next_offset = dict.fromkeys(counts, 0)
    order = []
    while any(next_offset[p] < n for p, n in counts.items()):
        partition = rng.choice([p for p, n in counts.items() if next_offset[p] < n])
        order.append((partition, next_offset[partition]))
        next_offset[partition] += 1
    return order


def filled(
    records: list[tuple[int, int]], max_records: int, max_bytes: int = 10**9, size: int = 10
) -> ReplayLog[str]:
    log: ReplayLog[str] = ReplayLog([0, 1, 2], {0: 0, 1: 0, 2: 0}, max_records, max_bytes)
    position = [0, 0, 0]
    for partition, offset in records:
        position[partition] = offset + 1
        log.append(partition, offset, tuple(position), f"{partition}:{offset}", size)
    return log


def test_the_oldest_records_leave_when_the_count_or_the_bytes_are_exceeded() -> None:
    records = interleaved({0: 30, 1: 20, 2: 10})
    by_count = filled(records, max_records=16)
    assert (by_count.first_seq, by_count.end_seq, len(by_count)) == (44, 60, 16)
    assert [logged.item for logged in by_count.range(44, 60)] == [
        f"{p}:{o}" for p, o in records[44:]
    ]
    # The log's start is the position after the last record that left.
    assert by_count.start == by_count.position_before(44)
    assert by_count.range(50, 50) == []

    by_bytes = filled(records, max_records=1000, max_bytes=95, size=10)
    assert len(by_bytes) == 9 and by_bytes.bytes == 90
    by_bytes.resize(by_bytes.get(by_bytes.end_seq - 1), 40)  # rendered: now larger
    assert by_bytes.bytes == 120  # the bound applies at the next append
    by_bytes.resize(by_bytes.get(by_bytes.end_seq - 1), 10)
    by_bytes.append(0, 30, (31, 20, 10), "0:30", 10)
    assert by_bytes.bytes <= 95 and by_bytes.get(by_bytes.end_seq - 1).item == "0:30"


def test_a_position_within_the_log_starts_at_its_first_unseen_record() -> None:
    records = interleaved({0: 40, 1: 25, 2: 15})
    log = filled(records, max_records=50)
    for cut in range(log.first_seq, log.end_seq + 1):
        # A position the log itself passed through: the client continues at the next record.
        position = log.position_before(cut)
        assert log.covers(position)
        assert log.first_unseen(position) == cut
    assert not log.covers((0, 0, 0))


def test_a_position_of_its_own_reaches_the_log_with_no_record_missed_or_repeated() -> None:
    """A client whose position was written by another interleaving (another gateway, a
    catch-up from the broker): it gets exactly the records after it, and from the moment its
    position equals the log's it can share the log's ids."""
    counts = {0: 40, 1: 25, 2: 15}
    records = interleaved(counts)
    log = filled(records, max_records=60)
    start = log.start
    for position in itertools.product(
        range(start[0], counts[0] + 1, 3),
        range(start[1], counts[1] + 1, 2),
        range(start[2], counts[2] + 1, 2),
    ):
        assert log.covers(position)
        cursor = log.first_unseen(position)
        catch = Catch(log.index, position)
        taken = []
        met = cursor == log.end_seq or position == log.position_before(cursor)
        for seq in range(cursor, log.end_seq):
            logged = log.get(seq)
            if met:
                taken.append((logged.partition, logged.offset))
                continue
            if catch.take(logged):
                taken.append((logged.partition, logged.offset))
            met = catch.caught(logged)
        expected = {(p, o) for p, n in counts.items() for o in range(position[p], n)}
        assert len(taken) == len(set(taken)) and set(taken) == expected, position

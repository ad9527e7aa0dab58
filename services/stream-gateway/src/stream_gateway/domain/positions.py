"""Where a client is in a topic: the next offset to read in each partition.

An SSE event's id is the position just after that event, written
`<topic>@<partition>:<next offset>,...` (e.g. `ledger.entries.v1@0:125,1:40,2:0`), so a client
that reconnects with `Last-Event-ID` resumes with the next record of every partition: no gap,
no duplicate. The topic is the catalogue's name; a gateway under a TOPIC_NAMESPACE maps it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_ID = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)@(?P<offsets>(\d+:\d+)(,\d+:\d+)*)?$")
MAX_PARTITIONS = 1024


class InvalidPosition(ValueError):
    """A Last-Event-ID or position parameter that is not a position in the stream's topic."""


def format_position(topic: str, next_offsets: Mapping[int, int]) -> str:
    offsets = ",".join(f"{p}:{o}" for p, o in sorted(next_offsets.items()))
    return f"{topic}@{offsets}"


def parse_position(text: str, topic: str) -> dict[int, int]:
    """The next offset per partition from an event id of `topic`'s stream."""
    match = _ID.match(text.strip())
    if match is None:
        raise InvalidPosition(f"not a stream position: {text[:80]!r}")
    if match["topic"] != topic:
        raise InvalidPosition(f"a position in {match['topic']}, not in {topic}")
    offsets: dict[int, int] = {}
    for pair in filter(None, (match["offsets"] or "").split(",")):
        partition, offset = (int(part) for part in pair.split(":"))
        if partition >= MAX_PARTITIONS or partition in offsets:
            raise InvalidPosition(f"bad partition {partition} in {text[:80]!r}")
        offsets[partition] = offset
    return offsets


def changed_since(change: tuple[int, int], position: Mapping[int, int]) -> bool:
    """Whether the record at (partition, offset) lies at or after `position`."""
    partition, offset = change
    return offset >= position.get(partition, 0)

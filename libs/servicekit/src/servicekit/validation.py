"""Checks at the platform's boundary: ids and enum numbers in requests.

Errors name the field and the rule, never echo the value: a caller that sent a megabyte of id
gets a short INVALID_ARGUMENT, not its own input back in the error metadata.
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import EnumDescriptor

from servicekit.errors import InvalidArgument

# Ids the platform stores and puts in keys and headers: partner, hub, vehicle, municipality,
# collection and event ids. UUIDs and the seeds' slugs fit; spaces, slashes and control
# characters do not.
ID_MAX_LENGTH = 128
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
ID_RULE = f"1 to {ID_MAX_LENGTH} letters, digits or . _ : @ -, starting with a letter or digit"


def is_valid_id(value: str) -> bool:
    return len(value) <= ID_MAX_LENGTH and ID_PATTERN.fullmatch(value) is not None


def require_id(field: str, value: str, *, optional: bool = False) -> str:
    """The id, or INVALID_ARGUMENT naming the field (an empty optional id passes)."""
    if not value:
        if optional:
            return value
        raise InvalidArgument(field, "required")
    if not is_valid_id(value):
        raise InvalidArgument(field, f"must be {ID_RULE}")
    return value


def require_known_enum(field: str, enum: EnumDescriptor, number: int) -> int:
    """An enum number this build knows (0, unspecified, included), or INVALID_ARGUMENT: an
    unknown number from a newer client must not be silently read as the default."""
    if number not in enum.values_by_number:
        raise InvalidArgument(field, f"unknown {enum.name} value {number}")
    return number

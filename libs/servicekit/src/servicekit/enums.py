"""Translation between protobuf enums (FUEL_TYPE_DIESEL) and domain StrEnums ("diesel").

The wire enums follow buf's naming rule (prefix + UPPER_SNAKE, zero value UNSPECIFIED); the
domain enums use the lower-case suffix as value, so the mapping is mechanical.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

DomainEnumT = TypeVar("DomainEnumT", bound=StrEnum)


def _prefix(proto_enum: Any) -> str:
    # Generated enum wrappers expose Name/Value on their metaclass, which no Protocol matches.
    unspecified = proto_enum.Name(0)
    return str(unspecified).removesuffix("UNSPECIFIED")


# Both directions run for every event a consumer turns into domain values or back (several
# enums per ledger entry): the translations are worked out once per enum and value.
_from_proto_cache: dict[tuple[int, int, type[StrEnum]], StrEnum | None] = {}
_to_proto_cache: dict[tuple[int, StrEnum], Any] = {}


def from_proto(proto_enum: Any, number: int, domain_enum: type[DomainEnumT]) -> DomainEnumT | None:
    """The domain value, or None for UNSPECIFIED or a number this build does not know."""
    key = (id(proto_enum), number, domain_enum)
    try:
        return _from_proto_cache[key]  # type: ignore[return-value]
    except KeyError:
        pass
    value = _translate_from_proto(proto_enum, number, domain_enum)
    # Unknown numbers are not remembered: a stream of made-up numbers must not grow the cache.
    if value is not None:
        _from_proto_cache[key] = value
    return value


def _translate_from_proto(
    proto_enum: Any, number: int, domain_enum: type[DomainEnumT]
) -> DomainEnumT | None:
    if number == 0:
        return None
    try:
        name = proto_enum.Name(number)
    except ValueError:
        return None
    suffix = name.removeprefix(_prefix(proto_enum)).lower()
    try:
        return domain_enum(suffix)
    except ValueError:
        return None


def to_proto(proto_enum: Any, value: StrEnum | None) -> Any:
    """The wire number (typed as the generated enum's ValueType, hence Any)."""
    if value is None or value.value == "":
        return 0
    key = (id(proto_enum), value)
    number = _to_proto_cache.get(key)
    if number is None:
        number = _to_proto_cache[key] = proto_enum.Value(_prefix(proto_enum) + value.value.upper())
    return number

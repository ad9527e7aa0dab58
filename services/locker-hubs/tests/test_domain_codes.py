import hashlib
import hmac
import itertools
from collections.abc import Callable

import pytest

from locker_hubs.domain.codes import codes_match, generate_code, hash_code

PEPPER = b"p" * 32


def _scripted_source(*samples: bytes) -> tuple[Callable[[int], bytes], list[int]]:
    """A random source replaying fixed samples and recording the sizes asked for."""
    queue = iter(samples)
    requested: list[int] = []

    def random_bytes(size: int) -> bytes:
        requested.append(size)
        return next(queue)

    return random_bytes, requested


def test_generate_code_is_eight_digits_from_the_injected_source() -> None:
    source, requested = _scripted_source((123).to_bytes(4, "big"))

    assert generate_code(source) == "00000123"
    assert requested == [4]


def test_generate_code_maps_the_sample_modulo_the_code_space() -> None:
    source, _ = _scripted_source((4_199_999_999).to_bytes(4, "big"))

    assert generate_code(source) == "99999999"


def test_generate_code_rejects_samples_that_would_bias_the_low_codes() -> None:
    # 4_200_000_000 and above lie in the incomplete last block of 10^8 and must be redrawn.
    source, requested = _scripted_source(
        (4_200_000_000).to_bytes(4, "big"),
        (2**32 - 1).to_bytes(4, "big"),
        (42).to_bytes(4, "big"),
    )

    assert generate_code(source) == "00000042"
    assert len(requested) == 3


def test_generate_code_refuses_a_short_random_source() -> None:
    source, _ = _scripted_source(b"\x00\x01")

    with pytest.raises(ValueError, match="bytes"):
        generate_code(source)


def test_generate_code_gives_up_on_a_source_that_never_fits() -> None:
    with pytest.raises(RuntimeError):
        generate_code(lambda size: b"\xff" * size)


def test_generate_code_with_real_randomness_is_numeric() -> None:
    counter = itertools.count()

    def pseudo_random(size: int) -> bytes:
        return hashlib.sha256(str(next(counter)).encode()).digest()[:size]

    codes = {generate_code(pseudo_random) for _ in range(200)}

    assert all(len(code) == 8 and code.isdigit() for code in codes)
    assert len(codes) == 200


def test_hash_code_is_hmac_sha256_of_hub_and_code() -> None:
    expected = hmac.new(PEPPER, b"molo-aalborg-01:12345678", hashlib.sha256).hexdigest()

    assert hash_code("12345678", "molo-aalborg-01", PEPPER) == expected


def test_hash_code_depends_on_pepper_hub_and_code() -> None:
    base = hash_code("12345678", "molo-aalborg-01", PEPPER)

    assert hash_code("12345678", "molo-aalborg-01", PEPPER) == base
    assert hash_code("12345678", "molo-aalborg-01", b"q" * 32) != base
    assert hash_code("12345678", "molo-aalborg-02", PEPPER) != base
    assert hash_code("12345679", "molo-aalborg-01", PEPPER) != base
    assert base != hashlib.sha256(b"molo-aalborg-01:12345678").hexdigest()


def test_hash_code_refuses_a_short_pepper() -> None:
    with pytest.raises(ValueError, match="pepper"):
        hash_code("12345678", "molo-aalborg-01", b"short")


def test_codes_match_compares_hashes() -> None:
    stored = hash_code("12345678", "molo-aalborg-01", PEPPER)

    assert codes_match(stored, hash_code("12345678", "molo-aalborg-01", PEPPER))
    assert not codes_match(stored, hash_code("87654321", "molo-aalborg-01", PEPPER))
    assert not codes_match(stored, "")

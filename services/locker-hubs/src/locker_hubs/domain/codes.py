"""One-time drop-off codes: generation, keyed hashing and constant-time comparison."""

import hashlib
import hmac
from collections.abc import Callable

CODE_DIGITS = 8
_CODE_SPACE = 10**CODE_DIGITS
_SAMPLE_BYTES = 4
# Largest multiple of the code space that fits in the sample, so every code is equally likely.
_ACCEPT_BELOW = (2 ** (8 * _SAMPLE_BYTES) // _CODE_SPACE) * _CODE_SPACE
# Each draw is rejected with probability ~2 %, so reaching this limit means a broken source.
_MAX_DRAWS = 64
# A short pepper could be guessed together with the code, which would defeat the keyed hash.
MIN_PEPPER_BYTES = 16


def generate_code(random_bytes: Callable[[int], bytes]) -> str:
    """Return a uniformly random 8-digit code drawn from the injected random source."""
    for _ in range(_MAX_DRAWS):
        sample = random_bytes(_SAMPLE_BYTES)
        if len(sample) != _SAMPLE_BYTES:
            raise ValueError(
                f"random source returned {len(sample)} bytes, expected {_SAMPLE_BYTES}"
            )
        value = int.from_bytes(sample, "big")
        # Rejection sampling: a plain modulo would favour the low codes.
        if value < _ACCEPT_BELOW:
            return f"{value % _CODE_SPACE:0{CODE_DIGITS}d}"
    raise RuntimeError(f"random source produced {_MAX_DRAWS} out-of-range samples in a row")


def hash_code(code: str, hub_id: str, pepper: bytes) -> str:
    """HMAC-SHA256 (hex) of the code bound to its hub, keyed by the server-side pepper."""
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ValueError(f"pepper must be at least {MIN_PEPPER_BYTES} bytes")
    message = f"{hub_id}:{code}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def codes_match(stored_hash: str, candidate_hash: str) -> bool:
    """Compare two code hashes in constant time."""
    return hmac.compare_digest(stored_hash.encode(), candidate_hash.encode())

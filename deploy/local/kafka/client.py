"""The two Kafka requests kafka.sh needs, in the Kafka protocol itself (standard library only,
tens of milliseconds where a Kafka CLI tool takes seconds of JVM start).

    python3 client.py probe HOST PORT [--user NAME --password-file FILE]

ApiVersions, then a SASL handshake for SCRAM-SHA-512 and, given credentials, the SCRAM
exchange, then a Metadata request that must list at least one live broker. Exit status:

    0   the broker answers (authenticated when credentials were given)
    1   nothing usable answers (no connection, not Kafka, no live broker yet)
    10  the broker answers without SASL (a PLAINTEXT listener)
    11  the broker takes SASL but refused these credentials

    python3 client.py set-scram-credential HOST CONTROLLER_PORT --user NAME --password-file FILE

Logs in to the controller listener with SASL/PLAIN as NAME (the admin the broker's properties
define) and sets NAME's SCRAM-SHA-512 credential in the cluster metadata. Kafka's Java admin
client refuses this request towards a controller; the controller itself serves it. This is how
a data dir formatted before SASL (without the admin's credential) gets one.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import secrets
import socket
import struct
import sys

API_METADATA = 3
API_SASL_HANDSHAKE = 17
API_VERSIONS = 18
API_SASL_AUTHENTICATE = 36
API_ALTER_USER_SCRAM_CREDENTIALS = 51
ILLEGAL_SASL_STATE = 34
MECHANISM = "SCRAM-SHA-512"
SCRAM_SHA_512 = 2  # the mechanism's number in AlterUserScramCredentials
SCRAM_ITERATIONS = 4096


class Refused(Exception):
    """The broker refused the credentials."""


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=3)
        self.sock.settimeout(3)
        self.correlation = 0

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    def request(self, api_key: int, version: int, body: bytes, flexible: bool = False) -> bytes:
        self.correlation += 1
        client = b"kafka.sh"
        header = struct.pack(">hhih", api_key, version, self.correlation, len(client)) + client
        if flexible:
            header += b"\x00"  # no tagged fields
        message = header + body
        self.sock.sendall(struct.pack(">i", len(message)) + message)
        size = struct.unpack(">i", self.recv_exact(4))[0]
        data = self.recv_exact(size)
        if struct.unpack(">i", data[:4])[0] != self.correlation:
            raise ValueError("correlation id mismatch")
        return data[4:]


def string(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


def api_range(conn: Connection, api_key: int) -> tuple[int, int] | None:
    response = conn.request(API_VERSIONS, 0, b"")
    error, count = struct.unpack(">hi", response[:6])
    if error:
        raise SystemExit(1)
    for i in range(count):
        key, low, high = struct.unpack(">hhh", response[6 + 6 * i : 12 + 6 * i])
        if key == api_key:
            return low, high
    return None


def compact_bytes(value: bytes) -> bytes:
    return unsigned_varint(len(value) + 1) + value


def unsigned_varint(value: int) -> bytes:
    out = b""
    while value >= 0x80:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


def sasl_handshake(conn: Connection, mechanism: str = MECHANISM) -> bool:
    """True when the listener takes SASL with the mechanism; False for a PLAINTEXT one."""
    response = conn.request(API_SASL_HANDSHAKE, 1, string(mechanism))
    (error,) = struct.unpack(">h", response[:2])
    if error == ILLEGAL_SASL_STATE:
        return False
    if error:
        raise SystemExit(1)  # SASL without this mechanism: not a broker of this project
    return True


def authenticate(conn: Connection, send: bytes) -> bytes:
    body = struct.pack(">i", len(send)) + send
    response = conn.request(API_SASL_AUTHENTICATE, 1, body)
    (error,) = struct.unpack(">h", response[:2])
    if error:
        raise Refused()
    (message_length,) = struct.unpack(">h", response[2:4])
    offset = 4 + max(message_length, 0)
    (length,) = struct.unpack(">i", response[offset : offset + 4])
    return response[offset + 4 : offset + 4 + length]


def scram_sha512(conn: Connection, user: str, password: str) -> None:
    """The client side of SCRAM (RFC 5802) with SHA-512."""
    nonce = base64.b64encode(secrets.token_bytes(24)).decode()
    name = user.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={name},r={nonce}"
    server_first = authenticate(conn, f"n,,{first_bare}".encode()).decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    if not fields["r"].startswith(nonce):
        raise Refused()
    salted = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha512")
    stored_key = hashlib.sha512(client_key).digest()
    final_bare = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha512")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_final = authenticate(
        conn, f"{final_bare},p={base64.b64encode(proof).decode()}".encode()
    ).decode()
    server_key = hmac.digest(salted, b"Server Key", "sha512")
    expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha512")).decode()
    if server_final != f"v={expected}":
        raise Refused()


def live_brokers(conn: Connection, low: int, high: int) -> int:
    if low <= 8:
        version = max(low, 1, min(high, 8))
        body = struct.pack(">i", 0)  # empty topic list
        if version >= 4:
            body += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            body += b"\x00\x00"  # include cluster/topic authorized operations
        response = conn.request(API_METADATA, version, body)
        offset = 4 if version >= 3 else 0  # throttle_time_ms
        return int(struct.unpack(">i", response[offset : offset + 4])[0])
    version = low  # flexible versions (>= 9)
    body = b"\x01" + b"\x00"  # empty compact topic array, allow_auto_topic_creation
    if version <= 10:
        body += b"\x00"  # include_cluster_authorized_operations
    body += b"\x00" + b"\x00"  # include_topic_authorized_operations, tagged fields
    response = conn.request(API_METADATA, version, body, flexible=True)
    # response header tagged fields (none: 1 byte), throttle_time_ms, compact array length + 1
    return response[5] - 1


def probe(host: str, port: int, user: str, password: str) -> int:
    conn = Connection(host, port)
    metadata = api_range(conn, API_METADATA)
    if metadata is None:
        return 1
    if not sasl_handshake(conn):
        # A PLAINTEXT listener: the handshake was refused, the connection is still usable.
        return 10 if live_brokers(conn, *metadata) >= 1 else 1
    if not user:
        return 0  # a SASL broker answers; without credentials this is as far as it goes
    try:
        scram_sha512(conn, user, password)
    except Refused:
        return 11
    return 0 if live_brokers(conn, *metadata) >= 1 else 1


def set_scram_credential(host: str, controller_port: int, user: str, password: str) -> int:
    conn = Connection(host, controller_port)
    if not sasl_handshake(conn, "PLAIN"):
        print("the controller listener does not take SASL/PLAIN", file=sys.stderr)
        return 1
    try:
        authenticate(conn, f"\0{user}\0{password}".encode())
    except Refused:
        print(f"the controller listener refused {user}'s password", file=sys.stderr)
        return 11
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
    upsertion = (
        compact_bytes(user.encode())
        + struct.pack(">bi", SCRAM_SHA_512, SCRAM_ITERATIONS)
        + compact_bytes(salt)
        + compact_bytes(salted)
        + b"\x00"  # tagged fields
    )
    # no deletions, one upsertion, no tagged fields
    body = unsigned_varint(1) + unsigned_varint(2) + upsertion + b"\x00"
    response = conn.request(API_ALTER_USER_SCRAM_CREDENTIALS, 0, body, flexible=True)
    # header tagged fields (1 byte), throttle_time_ms, results (compact array of one)
    results = response[5:]
    name_length = results[1] - 1
    (error,) = struct.unpack(">h", results[2 + name_length : 4 + name_length])
    if error:
        print(f"AlterUserScramCredentials failed with error code {error}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["probe", "set-scram-credential"])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--user", default="")
    parser.add_argument("--password-file", default="")
    arguments = parser.parse_args()
    password = ""
    if arguments.password_file:
        with open(arguments.password_file) as file:
            password = file.read().rstrip("\n")
    if arguments.command == "set-scram-credential":
        return set_scram_credential(arguments.host, arguments.port, arguments.user, password)
    try:
        return probe(arguments.host, arguments.port, arguments.user, password)
    except (OSError, EOFError, ValueError, struct.error):
        return 1


if __name__ == "__main__":
    sys.exit(main())

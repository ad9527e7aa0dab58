"""Development credentials: a CA, a certificate per service, token signing keys, tokens.

For `make run`, `make demo`, the benchmark and the tests; a deployment brings its own CA and
token issuer (docs/security.md). Everything lands in one directory (default var/pki):

    ca.crt, ca.key                  the development CA
    <service>.crt, <service>.key    one certificate per service (CN = service name; SANs for
                                    localhost and 127.0.0.1), also its client certificate
    signing/<kid>.key               token signing keys (ES256); the newest one signs
    jwks.json                       the public keys the services accept (AUTH_JWKS_FILE)

Usage:
    python -m tools.pki init [--dir var/pki]
    python -m tools.pki token --role fleet-manager --partner aalborg-kommune [--subject ...]
    python -m tools.pki rotate            a new signing key; the old one stays accepted
    python -m tools.pki retire KID        stop accepting an old key
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "var" / "pki"
SERVICES = (
    "partner-registry",
    "locker-hubs",
    "fleet-telemetry",
    "emissions-ledger",
    "stream-gateway",
)
DEVELOPMENT_ISSUER = "greenpartners-development"
DEVELOPMENT_AUDIENCE = "greenpartners"
CERTIFICATE_DAYS = 30


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def jwks_file(self) -> Path:
        return self.directory / "jwks.json"

    def cert_file(self, service: str) -> Path:
        return self.directory / f"{service}.crt"

    def key_file(self, service: str) -> Path:
        return self.directory / f"{service}.key"

    def service_environment(self, service: str) -> dict[str, str]:
        """The settings a service needs to serve and call with these credentials."""
        return {
            "TLS_CERT_FILE": str(self.cert_file(service)),
            "TLS_KEY_FILE": str(self.key_file(service)),
            "TLS_CA_FILE": str(self.ca_file),
            "AUTH_JWKS_FILE": str(self.jwks_file),
            "AUTH_ISSUER": DEVELOPMENT_ISSUER,
            "AUTH_AUDIENCE": DEVELOPMENT_AUDIENCE,
        }

    def channel(
        self, target: str, role: str | tuple[str, ...] = "", partner: str = "", subject: str = ""
    ) -> grpc.aio.Channel:
        """A TLS channel to a service's token listener, every call as `role` (for `partner`);
        without a role, say who calls per call with `call_as` (or nobody: health checks)."""
        credentials = grpc.ssl_channel_credentials(self.ca_file.read_bytes())
        if role:
            credentials = grpc.composite_channel_credentials(
                credentials, self.call_as(role, partner, subject)
            )
        return grpc.aio.secure_channel(target, credentials)

    def service_channel(self, target: str, service: str) -> grpc.aio.Channel:
        """A mutual-TLS channel, calling as `service` with its certificate."""
        credentials = grpc.ssl_channel_credentials(
            self.ca_file.read_bytes(),
            self.key_file(service).read_bytes(),
            self.cert_file(service).read_bytes(),
        )
        return grpc.aio.secure_channel(target, credentials)

    def call_as(
        self, role: str | tuple[str, ...], partner: str = "", subject: str = ""
    ) -> grpc.CallCredentials:
        """Per-call credentials: a fresh token for the role (and partner, and subject)."""
        return grpc.access_token_call_credentials(self.token(role, partner, subject))

    def token(
        self,
        role: str | tuple[str, ...],
        partner: str = "",
        subject: str = "",
        lifetime: dt.timedelta = dt.timedelta(hours=8),
    ) -> str:
        roles = [role] if isinstance(role, str) else list(role)
        kid, key = self._newest_signing_key()
        now = dt.datetime.now(dt.UTC)
        claims = {
            "iss": DEVELOPMENT_ISSUER,
            "aud": DEVELOPMENT_AUDIENCE,
            "sub": subject or f"{roles[0]}:{partner or 'platform'}",
            "roles": roles,
            "iat": now,
            "exp": now + lifetime,
        }
        if partner:
            claims["partner"] = partner
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})

    def _signing_keys(self) -> list[Path]:
        return sorted((self.directory / "signing").glob("*.key"), key=lambda p: p.stat().st_mtime)

    def _newest_signing_key(self) -> tuple[str, ec.EllipticCurvePrivateKey]:
        newest = self._signing_keys()[-1]
        key = serialization.load_pem_private_key(newest.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return newest.stem, key


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Green Partnerships Platform (dev)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key_path = pki.directory / "ca.key"
    if pki.ca_file.exists() and key_path.exists():
        certificate = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
        if certificate.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1):
            return certificate, _load_private(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("greenpartners development CA"))
        .issuer_name(_name("greenpartners development CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key)
    pki.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    for service in SERVICES:  # certificates of an old CA no longer verify
        pki.cert_file(service).unlink(missing_ok=True)
    return certificate, key


def _service_certificate(
    pki: Pki, service: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    if pki.cert_file(service).exists() and pki.key_file(service).exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [
        x509.DNSName(service),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(service))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(ca.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(pki.key_file(service), key)
    pki.cert_file(service).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _publish_jwks(pki: Pki) -> None:
    keys = []
    for path in pki._signing_keys():
        public = _load_private(path).public_key()
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
        keys.append({**jwk, "kid": path.stem, "alg": "ES256", "use": "sig"})
    temporary = pki.jwks_file.with_suffix(".tmp")
    temporary.write_text(json.dumps({"keys": keys}, indent=2) + "\n")
    temporary.replace(pki.jwks_file)  # services reload it: never let them see half a file


def rotate(pki: Pki) -> str:
    kid = f"dev-{dt.datetime.now(dt.UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}"
    _write_private(
        pki.directory / "signing" / f"{kid}.key", ec.generate_private_key(ec.SECP256R1())
    )
    _publish_jwks(pki)
    return kid


def retire(pki: Pki, kid: str) -> None:
    (pki.directory / "signing" / f"{kid}.key").unlink()
    _publish_jwks(pki)


def init(directory: Path = DEFAULT_DIR) -> Pki:
    """Creates what is missing (or expired) and keeps what is there."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca(pki)
    for service in SERVICES:
        _service_certificate(pki, service, ca, ca_key)
    if not pki._signing_keys():
        rotate(pki)
    return pki


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pki", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="create the development CA, certificates and signing key")
    token = commands.add_parser("token", help="print a development bearer token")
    token.add_argument("--role", required=True)
    token.add_argument("--partner", default="", help="the partner id the caller acts for")
    token.add_argument("--subject", default="")
    token.add_argument("--hours", type=float, default=8.0)
    commands.add_parser("rotate", help="add a new signing key; older keys stay accepted")
    retire_command = commands.add_parser("retire", help="stop accepting a signing key")
    retire_command.add_argument("kid")
    args = parser.parse_args(argv)

    pki = init(args.dir)
    if args.command == "token":
        print(pki.token(args.role, args.partner, args.subject, dt.timedelta(hours=args.hours)))
    elif args.command == "rotate":
        print(rotate(pki))
    elif args.command == "retire":
        retire(pki, args.kid)
    else:
        print(f"development credentials in {args.dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

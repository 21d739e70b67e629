"""Key material the sandbox generates on first start and reuses after.

- a private certificate authority and a server certificate for ``localhost``/``127.0.0.1``/``::1``
  (Salesforce clients speak HTTPS only; ``SALESFORCE_CA_FILE`` lets them verify it);
- an RSA key pair for the Salesforce JWT bearer flow (``SALESFORCE_JWT_KEY_FILE`` is the private
  key a client signs its assertion with; the emulator checks it with the public key).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Materials:
    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path
    jwt_key_file: Path
    jwt_public_key_file: Path

    @property
    def jwt_public_key_pem(self) -> bytes:
        return self.jwt_public_key_file.read_bytes()


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_materials(directory: Path) -> Materials:
    """Create what is missing in ``directory`` (idempotent) and return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    m = Materials(
        directory=directory,
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server-key.pem",
        jwt_key_file=directory / "jwt-key.pem",
        jwt_public_key_file=directory / "jwt-public.pem",
    )
    if not (m.ca_file.exists() and m.cert_file.exists() and m.key_file.exists()):
        _write_certificates(m)
    if not (m.jwt_key_file.exists() and m.jwt_public_key_file.exists()):
        key = _key()
        m.jwt_key_file.write_bytes(_pem(key))
        m.jwt_key_file.chmod(0o600)
        m.jwt_public_key_file.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return m


def _write_certificates(m: Materials) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmsync sandbox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key()
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    m.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    m.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    m.key_file.write_bytes(_pem(server_key))
    m.key_file.chmod(0o600)

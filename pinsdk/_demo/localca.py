"""A throw-away certificate authority for loopback demos and benchmarks.

Uses only ``cryptography`` (a runtime dependency), so ``pinsdk demo`` needs nothing else.
Never use these certificates outside 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["LocalCA", "LocalCert"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@attrs.frozen
class LocalCert:
    """A leaf certificate, its key and the chain up to (not including) the root."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    def server_context(self) -> ssl.SSLContext:
        """A server-side ``SSLContext`` presenting this certificate and its chain."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        chain_pem = b"".join(_pem(c) for c in (self.cert, *self.chain))
        fd, path = tempfile.mkstemp(suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key_pem + chain_pem)
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        return ctx


class LocalCA:
    """A root CA, optionally with an intermediate, that issues loopback certificates."""

    def __init__(self, name: str, *, key_type: str = "ec", intermediate: bool = True) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        self._not_before = now - datetime.timedelta(hours=1)
        self._not_after = now + datetime.timedelta(days=30)
        self.key_type = key_type
        self.root_key = _new_key(key_type)
        self.root = self._sign(f"{name} Root CA", self.root_key.public_key(), None, ca=True)
        self.signer_key: PrivateKey = self.root_key
        self.signer = self.root
        self.intermediates: tuple[x509.Certificate, ...] = ()
        if intermediate:
            key = _new_key(key_type)
            cert = self._sign(f"{name} Intermediate CA", key.public_key(), None, ca=True)
            self.signer_key, self.signer, self.intermediates = key, cert, (cert,)

    @property
    def root_pem(self) -> bytes:
        """The root certificate in PEM, for a client's trust store."""
        return _pem(self.root)

    def trust(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Add this CA's root to a client context's trust anchors."""
        context.load_verify_locations(cadata=self.root_pem.decode("ascii"))
        return context

    def issue(self, *names: str, key_type: str | None = None) -> LocalCert:
        """Issue a server certificate for host names and IP addresses."""
        key = _new_key(key_type or self.key_type)
        cert = self._sign(names[0], key.public_key(), names, ca=False)
        return LocalCert(cert=cert, key=key, chain=self.intermediates)

    def _sign(
        self,
        common_name: str,
        public_key: object,
        names: tuple[str, ...] | None,
        *,
        ca: bool,
    ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        is_root = not hasattr(self, "root")  # the first certificate signs itself
        issuer_key: PrivateKey = self.root_key if is_root else self.signer_key
        issuer_name = subject if is_root else self.signer.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
        if ca:
            builder = builder.add_extension(
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
        if names:
            sans: list[x509.GeneralName] = []
            for name in names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    sans.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

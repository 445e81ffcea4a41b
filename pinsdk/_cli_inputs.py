"""Reading the command line's input files, with errors that name the file and say what it holds.

A parser's own message (an ASN.1 ``ParseError``, PEM ``MalformedFraming``) tells a user nothing:
each loader here looks at what the file actually is ("a PEM public key", "an unsigned policy")
and says which option such a file belongs to.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._core.errors import PinConfigError
from ._core.keys import TrustedKey

__all__ = [
    "CliError",
    "NetworkError",
    "describe_file",
    "distinct_keys",
    "load_certificates",
    "load_private_key_pem",
    "load_public_key_pem",
    "order_chain",
    "parse_target",
    "read_input",
]


class CliError(Exception):
    """A usage or input problem: printed, exit status 2."""

    status = 2


class NetworkError(CliError):
    """The host could not be reached, or TLS failed: exit status 3."""

    status = 3


Kind = Literal[
    "empty",
    "certificate",
    "public key",
    "private key",
    "envelope",
    "policy",
    "json",
    "pem",
    "binary",
    "text",
]

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PRIVATE_LABELS = {
    b"PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"DSA PRIVATE KEY",
    b"OPENSSH PRIVATE KEY",
}
_PUBLIC_LABELS = {b"PUBLIC KEY", b"RSA PUBLIC KEY"}
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}


def _kind(data: bytes) -> tuple[Kind, str]:
    """What ``data`` looks like: a kind, and the phrase that names it."""
    if not data.strip():
        return "empty", "an empty file"
    label = _PEM_LABEL.search(data)
    if label:
        name = label.group(1)
        if name in _CERT_LABELS:
            return "certificate", "a PEM certificate"
        if name in _PUBLIC_LABELS:
            return "public key", "a PEM public key"
        if name in _PRIVATE_LABELS:
            return "private key", "a PEM private key"
        return "pem", f"a PEM {name.decode('ascii').lower()}"
    if data.lstrip()[:1] in (b"{", b"["):
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return "json", "text starting like JSON, but not valid JSON"
        if isinstance(doc, dict) and {"payloadType", "payload", "signatures"} & doc.keys():
            return "envelope", "a signed pin document (a DSSE envelope)"
        if isinstance(doc, dict) and "domains" in doc:
            return "policy", "an unsigned pin policy (JSON with 'domains')"
        return "json", "JSON that is neither a pin policy nor a signed pin document"
    if data[:1] == b"\x30":
        for loader, kind, phrase in (
            (x509.load_der_x509_certificate, "certificate", "a DER certificate"),
            (serialization.load_der_public_key, "public key", "a DER public key"),
        ):
            try:
                loader(data)
            except (ValueError, TypeError):
                continue
            return kind, phrase  # type: ignore[return-value]
        try:
            serialization.load_der_private_key(data, password=None)
        except (ValueError, TypeError):
            return "binary", "binary data that is no DER certificate or key"
        return "private key", "a DER private key"
    try:
        first = data.decode("utf-8").strip().splitlines()[0]
    except UnicodeDecodeError:
        return "binary", "binary data that is no DER certificate or key"
    shown = first if len(first) <= 40 else first[:37] + "..."
    return "text", f"text ({shown!r}), not PEM or DER"


def describe_file(data: bytes) -> str:
    """A phrase naming what ``data`` looks like, e.g. ``"a PEM public key"``."""
    return _kind(data)[1]


def read_input(path: str, what: str) -> bytes:
    """The bytes of ``path``; :class:`CliError` naming ``what`` it was meant to be if unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def _wrong(path: str, data: bytes, expected: str, hints: dict[str, str]) -> CliError:
    kind, phrase = _kind(data)
    hint = hints.get(kind, "")
    return CliError(f"{path!r} is {phrase}, not {expected}" + (f"; {hint}" if hint else ""))


_CERT_HINTS = {
    "public key": "use --key for the pin of a key without a certificate",
    "private key": "use --key for the pin of a key without a certificate",
    "policy": "a policy holds pins, not certificates",
    "envelope": "check a signed document with pinsdk verify",
}


def load_certificates(path: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file (bundles allowed) or one DER certificate."""
    data = read_input(path, "certificate")
    kind, _ = _kind(data)
    if kind != "certificate":
        raise _wrong(path, data, "a certificate (PEM or DER)", _CERT_HINTS)
    try:
        if not _PEM_LABEL.search(data):
            return [x509.load_der_x509_certificate(data)]
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CliError(
            f"{path!r} looks like a certificate but does not parse (damaged, or not strict DER)"
        ) from None


def load_public_key_pem(path: str, option: str) -> bytes:
    """A signing public key file (what ``pinsdk keygen`` wrote to ``KEY.pub``), as PEM."""
    data = read_input(path, f"{option} file")
    kind, _ = _kind(data)
    hints = {
        "private key": f"{option} takes the public key: the KEY.pub file pinsdk keygen wrote",
        "certificate": f"{option} takes a signing public key (KEY.pub from pinsdk keygen)",
        "policy": f"{option} takes a public key file; the policy is the positional argument",
        "envelope": f"{option} takes a public key file; the document is the positional argument",
    }
    if kind != "public key":
        raise _wrong(path, data, "a public key", hints)
    if not data.lstrip().startswith(b"-----"):  # DER: the key set reads PEM
        try:
            key = serialization.load_der_public_key(data)
        except ValueError:
            raise CliError(f"{path!r} looks like a public key but does not parse") from None
        return key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return data


def load_private_key_pem(path: str, option: str) -> bytes:
    """A signing private key file (what ``pinsdk keygen`` wrote to ``KEY``), as PEM bytes."""
    data = read_input(path, f"{option} file")
    kind, _ = _kind(data)
    hints = {
        "public key": f"{option} takes the private key (KEY, not KEY.pub) to sign with",
        "certificate": f"{option} takes a signing private key made by pinsdk keygen",
        "policy": f"{option} takes a private key file; the policy is the positional argument",
    }
    if kind != "private key":
        raise _wrong(path, data, "a private key", hints)
    return data


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return cert.subject == cert.issuer


def order_chain(
    certs: Sequence[x509.Certificate],
) -> list[tuple[x509.Certificate, Literal["leaf", "intermediate", "root"]]]:
    """Certificates in chain order (leaf, intermediates, root) with their roles, whatever the
    order of the files: each certificate's issuer is found by subject. Certificates that do not
    link into the chain follow it, with a role from their own shape (self-signed: root; a CA:
    intermediate; otherwise leaf)."""
    pending = list(dict.fromkeys(certs))  # a certificate given twice is listed once
    issued_by = {c.issuer for c in pending if c.subject != c.issuer}
    # The leaf: issued by someone in the set or not, but issuer of none of the others.
    leaves = [
        c for c in pending if c.subject not in issued_by and c.subject != c.issuer and not _is_ca(c)
    ] or [c for c in pending if c.subject not in issued_by and c.subject != c.issuer]
    ordered: list[tuple[x509.Certificate, Literal["leaf", "intermediate", "root"]]] = []
    if leaves:
        current = leaves[0]
        ordered.append((current, "leaf"))
        pending.remove(current)
        for _ in range(len(pending)):
            parent = next((c for c in pending if c.subject == current.issuer), None)
            if parent is None:
                break
            pending.remove(parent)
            ordered.append((parent, "root" if parent.subject == parent.issuer else "intermediate"))
            current = parent
            if parent.subject == parent.issuer:
                break
    for cert in pending:
        role: Literal["leaf", "intermediate", "root"] = (
            "root" if cert.subject == cert.issuer else "intermediate" if _is_ca(cert) else "leaf"
        )
        ordered.append((cert, role))
    return ordered


def distinct_keys(paths: Sequence[str], pems: Sequence[bytes], option: str) -> list[bytes]:
    """The keys given once each: the same key given twice (two paths or one path twice)
    would otherwise be counted twice in a summary. Says so on standard error."""
    seen: dict[str, str] = {}
    distinct = []
    for path, pem in zip(paths, pems, strict=True):
        try:
            keyid = TrustedKey.load(pem).keyid
        except PinConfigError as exc:
            raise CliError(f"{option} {path!r}: {exc}") from None
        if keyid in seen:
            same = "given twice" if seen[keyid] == path else f"the same key as {seen[keyid]!r}"
            print(f"warning: {option} {path!r} is {same}: counted once", file=sys.stderr)
            continue
        seen[keyid] = path
        distinct.append(pem)
    return distinct


def parse_target(target: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or an ``https://`` URL -> (host, port); 443 by
    default."""
    if "://" in target:
        try:
            url = urlsplit(target)
            url_port = url.port
        except ValueError as exc:
            raise CliError(f"{target!r} is not a usable URL: {exc}") from None
        if url.scheme.lower() != "https":
            raise CliError(
                f"{target!r}: only https:// URLs have certificates to pin (scheme {url.scheme!r})"
            )
        if not url.hostname:
            raise CliError(f"{target!r} has no host")
        return url.hostname, 443 if url_port is None else url_port
    host, port = target, "443"
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "443"
    elif target.count(":") == 1:
        host, port = target.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"{target!r} is not HOST[:PORT] or an https:// URL")
    return host, int(port)

"""TLS for the edge: server and client contexts, and a self-signed certificate for ``sipmesh up``.

RFC 5630 §3.1.1 makes TLS the way SIP secures a hop, and RFC 8996 retires what
came before TLS 1.2: "TLS 1.0 MUST NOT be used" and "TLS 1.1 MUST NOT be used".
Both contexts here therefore accept TLS 1.2 and 1.3 only, and for TLS 1.2 only
forward-secret AEAD cipher suites (RFC 7525 §4.2: "Implementations SHOULD NOT
negotiate cipher suites that use algorithms offering less than 128 bits of
security", and prefer ECDHE with AES-GCM). TLS 1.3 suites are all AEAD and
OpenSSL's defaults are kept.

:func:`generate_self_signed` runs the ``openssl`` command line, so the edge
needs no extra Python package; the result is for development and for a first
``sipmesh up``, never for production, where a real certificate is configured.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal, TypeAlias

__all__ = [
    "CIPHERS",
    "CertificateError",
    "ClientAuth",
    "client_context",
    "ensure_self_signed",
    "generate_self_signed",
    "server_context",
]

ClientAuth: TypeAlias = Literal["none", "optional", "required"]

CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)
"""TLS 1.2 suites: forward secrecy (ECDHE/DHE) and AEAD only (RFC 7525 §4.2)."""

_VERIFY_MODES: Final[dict[str, ssl.VerifyMode]] = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_OPENSSL_TIMEOUT: Final = 60.0


class CertificateError(RuntimeError):
    """A self-signed certificate could not be made (no ``openssl``, or it failed)."""


def _harden(context: ssl.SSLContext) -> None:
    # RFC 8996 §5: "TLS 1.1 MUST NOT be used"; §4 says the same of TLS 1.0.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    # No TLS compression (CRIME) and no renegotiation (a cheap way for a
    # client to make the server do expensive handshakes over and over).
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def server_context(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    ca_file: str | os.PathLike[str] | None = None,
    client_auth: ClientAuth = "none",
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """A server context for the TLS and WSS listeners.

    Args:
        cert_file: PEM certificate chain, leaf first.
        key_file: PEM private key of the leaf.
        ca_file: PEM bundle of CAs that sign client certificates; without it the
            system's default CAs are used when client certificates are asked for.
        client_auth: ``"none"`` asks for no client certificate, ``"optional"``
            verifies one if the client sends it (RFC 5922 mutual TLS between
            proxies), ``"required"`` refuses clients without a valid one.
        ciphers: an OpenSSL cipher string replacing :data:`CIPHERS` (TLS 1.2
            suites only), for peers that cannot do better.

    Returns:
        The context: TLS 1.2 and 1.3 only, server cipher preference.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: the certificate, key or cipher string is invalid.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    if ciphers is not None:
        context.set_ciphers(ciphers)
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert_file, key_file)
    context.verify_mode = _VERIFY_MODES[client_auth]
    if client_auth != "none":
        if ca_file is not None:
            context.load_verify_locations(cafile=ca_file)
        else:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return context


def client_context(
    *,
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client context for outbound TLS connections (to gateways, other proxies).

    Args:
        ca_file: PEM bundle of trusted CAs; None uses the system's.
        cert_file: this edge's certificate, for servers that ask for one.
        key_file: its private key (None: inside ``cert_file``).
        verify: check the server's certificate and host name. RFC 5922 §7.2:
            a client "MUST use the procedures [...] to authenticate the
            server"; turn it off only for a lab.

    Returns:
        The context: TLS 1.2 and 1.3 only.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: a certificate or key is invalid.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    _harden(context)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def generate_self_signed(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    common_name: str = "sipmesh",
    hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    days: int = 825,
) -> None:
    """Write a new self-signed ECDSA P-256 certificate and its key.

    Both files appear whole or not at all (they are written in a private
    temporary directory and moved into place); the key is readable by the
    owner only.

    Args:
        cert_file: where to write the PEM certificate.
        key_file: where to write the PEM private key (mode 0600).
        common_name: the subject CN.
        hosts: names and IP addresses for the subjectAltName, which is what
            clients match (RFC 5922 §7.1: "the subjectAltName extension").
        days: validity; 825 is the longest that Apple clients accept.

    Raises:
        CertificateError: ``openssl`` is missing or failed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError(
            "cannot generate a TLS certificate: the openssl command was not found;"
            " install it, or configure a certificate and key"
        )
    cert_path, key_path = Path(cert_file), Path(key_file)
    with tempfile.TemporaryDirectory(prefix="sipmesh-tls-") as tmp:
        tmp_cert, tmp_key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        command = [
            openssl, "req", "-x509", "-new", "-nodes",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-sha256", "-days", str(days),
            "-subj", "/CN=" + _dn_escape(common_name),
            "-addext", "subjectAltName=" + _subject_alt_name(hosts),
            "-keyout", str(tmp_key), "-out", str(tmp_cert),
        ]  # fmt: skip
        try:
            result = subprocess.run(  # noqa: S603 (fixed argument list, no shell)
                command, capture_output=True, timeout=_OPENSSL_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CertificateError(f"openssl failed: {exc}") from exc
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CertificateError("openssl failed: " + (detail[-1] if detail else "no output"))
        tmp_key.chmod(0o600)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.parent.mkdir(parents=True, exist_ok=True)
        # shutil.move falls back to copy + delete across file systems.
        shutil.move(tmp_key, key_path)
        shutil.move(tmp_cert, cert_path)


def ensure_self_signed(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    common_name: str = "sipmesh",
    hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    days: int = 825,
) -> bool:
    """Generate a self-signed certificate unless both files already exist.

    Args:
        cert_file: the certificate path.
        key_file: the key path.
        common_name: see :func:`generate_self_signed`.
        hosts: see :func:`generate_self_signed`.
        days: see :func:`generate_self_signed`.

    Returns:
        True when a certificate was generated, False when the files were there.

    Raises:
        CertificateError: see :func:`generate_self_signed`.
    """
    if Path(cert_file).is_file() and Path(key_file).is_file():
        return False
    generate_self_signed(cert_file, key_file, common_name=common_name, hosts=hosts, days=days)
    return True


def _subject_alt_name(hosts: Sequence[str]) -> str:
    entries = []
    for host in hosts:
        try:
            entries.append("IP:" + str(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c in host for c in ",/\\\n") or not host.isascii():
                raise CertificateError(f"not a valid host name: {host!r}") from None
            entries.append("DNS:" + host)
    if not entries:
        raise CertificateError("a certificate needs at least one host name or address")
    return ",".join(entries)


def _dn_escape(value: str) -> str:
    # openssl -subj separates RDNs with "/" and pairs with "=": escape both.
    return value.replace("\\", "\\\\").replace("/", "\\/").replace("=", "\\=")

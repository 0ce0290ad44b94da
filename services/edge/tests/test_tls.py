"""TLS contexts and the self-signed certificate generator, checked with real handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sipmesh_edge import tls


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    tls.generate_self_signed(folder / "cert.pem", folder / "key.pem")
    return folder / "cert.pem", folder / "key.pem"


@contextlib.asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A server that says b"ok" to each client and closes; yields its port."""

    async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def handshake(port: int, context: ssl.SSLContext, server_hostname: str) -> str:
    """Connect, read the greeting; returns the negotiated TLS version."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=server_hostname
    )
    try:
        assert await reader.read() == b"ok"
        version = writer.get_extra_info("ssl_object").version()
        assert isinstance(version, str)
        return version
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def refused(port: int, context: ssl.SSLContext, server_hostname: str) -> bool:
    """Whether the server refuses the client: an error, or no greeting before the end."""
    try:
        await handshake(port, context, server_hostname)
    except (ssl.SSLError, ConnectionResetError, AssertionError):
        return True
    return False


def test_generate_self_signed_writes_a_private_key(pair: tuple[Path, Path]) -> None:
    cert, key = pair
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY-----" in key.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_server_context_settings(pair: tuple[Path, Path]) -> None:
    context = tls.server_context(*pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    for cipher in tls12:
        assert cipher["aead"], cipher["name"]
        assert cipher["kea"] in {"kx-ecdhe", "kx-dhe"}, cipher["name"]


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1"])
async def test_certificate_names_verify(pair: tuple[Path, Path], name: str) -> None:
    client = ssl.create_default_context(cafile=pair[0])
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on
    async with tls_server(tls.server_context(*pair)) as port:
        assert await handshake(port, client, name) in {"TLSv1.2", "TLSv1.3"}


async def test_certificate_wrong_name_refused(pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=pair[0])
    async with tls_server(tls.server_context(*pair)) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(port, client, "sip.example.com")


async def test_generate_self_signed_custom_hosts(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    tls.generate_self_signed(cert, key, common_name="edge/1", hosts=["sip.example.com", "10.1.2.3"])
    client = ssl.create_default_context(cafile=cert)
    async with tls_server(tls.server_context(cert, key)) as port:
        await handshake(port, client, "sip.example.com")
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(port, client, "localhost")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_1_refused_but_offered_by_a_capable_client(pair: tuple[Path, Path]) -> None:
    def client(newest: ssl.TLSVersion) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=pair[0])
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = newest
        return context

    # Control: this client really can speak TLS 1.1 to a server that allows it.
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.load_cert_chain(*pair)
    lax.set_ciphers("ALL:@SECLEVEL=0")
    lax.minimum_version = ssl.TLSVersion.TLSv1_1
    async with tls_server(lax) as port:
        assert await handshake(port, client(ssl.TLSVersion.TLSv1_1), "localhost") == "TLSv1.1"
    async with tls_server(tls.server_context(*pair)) as port:
        assert await handshake(port, client(ssl.TLSVersion.TLSv1_2), "localhost") == "TLSv1.2"
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await handshake(port, client(ssl.TLSVersion.TLSv1_1), "localhost")


async def test_client_auth_required(pair: tuple[Path, Path], tmp_path: Path) -> None:
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    tls.generate_self_signed(client_cert, client_key, common_name="proxy", hosts=["proxy"])
    server = tls.server_context(*pair, ca_file=client_cert, client_auth="required")
    assert server.verify_mode == ssl.CERT_REQUIRED
    with_cert = tls.client_context(ca_file=pair[0], cert_file=client_cert, key_file=client_key)
    without = tls.client_context(ca_file=pair[0])
    async with tls_server(server) as port:
        assert await handshake(port, with_cert, "localhost") == "TLSv1.3"
        # With TLS 1.3 the client's handshake completes before the server
        # refuses it, so the refusal surfaces on the first read.
        assert await refused(port, without, "localhost")


def test_client_auth_optional(pair: tuple[Path, Path]) -> None:
    server = tls.server_context(*pair, ca_file=pair[0], client_auth="optional")
    assert server.verify_mode == ssl.CERT_OPTIONAL


async def test_client_context_verifies_unless_told_not_to(pair: tuple[Path, Path]) -> None:
    system_only = tls.client_context()
    assert system_only.minimum_version == ssl.TLSVersion.TLSv1_2
    lab = tls.client_context(verify=False)
    async with tls_server(tls.server_context(*pair)) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            await handshake(port, system_only, "localhost")
        assert await handshake(port, lab, "anything") in {"TLSv1.2", "TLSv1.3"}


def test_ensure_self_signed_generates_once(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert tls.ensure_self_signed(cert, key) is True
    first = cert.read_bytes()
    assert tls.ensure_self_signed(cert, key) is False
    assert cert.read_bytes() == first
    key.unlink()  # half a pair is regenerated whole
    assert tls.ensure_self_signed(cert, key) is True
    assert cert.read_bytes() != first


def test_generate_without_openssl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _: None)
    with pytest.raises(tls.CertificateError, match="openssl"):
        tls.generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    assert not (tmp_path / "c.pem").exists()


@pytest.mark.parametrize("hosts", [[], ["bad,host"], ["x/y"]])
def test_generate_rejects_bad_hosts(tmp_path: Path, hosts: list[str]) -> None:
    with pytest.raises(tls.CertificateError):
        tls.generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", hosts=hosts)
    assert not (tmp_path / "k.pem").exists()


def test_openssl_failure_reported(tmp_path: Path) -> None:
    with pytest.raises(tls.CertificateError, match="openssl failed"):
        tls.generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", days=-5)


def test_exported_members() -> None:
    assert sorted(tls.__all__) == [
        "CIPHERS",
        "CertificateError",
        "ClientAuth",
        "client_context",
        "ensure_self_signed",
        "generate_self_signed",
        "server_context",
    ]

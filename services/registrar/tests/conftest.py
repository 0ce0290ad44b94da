"""A scripted SIP user agent for the registrar tests: REGISTERs and digest answers."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Subscriber, aor_key
from sipmesh_bus.schema import Envelope
from sipmsg import Request, Response, parse
from sipmsg.digest import Challenge, build_authorization, ha1_md5, ha1_sha256

DOMAIN = "example.com"


def subscriber(user: str, password: str, domain: str = DOMAIN, **kw: bool) -> Subscriber:
    """A subscriber record as ``sipmesh user add`` would store it."""
    u, d, p = user.encode(), domain.encode(), password.encode()
    return Subscriber(
        user=user,
        domain=domain,
        ha1_md5=ha1_md5(u, d, p).decode(),
        ha1_sha256=ha1_sha256(u, d, p).decode(),
        **kw,
    )


def table(*subs: Subscriber) -> dict[str, Subscriber]:
    """The registrar's subscriber cache holding ``subs``."""
    return {aor_key(s.user, s.domain): s for s in subs}


@dataclass
class UA:
    """Builds REGISTER requests for one AoR, with the CSeq counting up."""

    user: str = "alice"
    domain: str = DOMAIN
    call_id: str = "reg-1@192.0.2.7"
    contact_host: str = "192.0.2.7:5060"
    _cseq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def register(
        self,
        contacts: Sequence[str] | None = None,
        *,
        expires: int | None = None,
        cseq: int | None = None,
        ruri: str | None = None,
        to: str | None = None,
        call_id: str | None = None,
        authorization: bytes | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """A REGISTER; ``contacts`` are Contact values (default: one for this UA)."""
        if contacts is None:
            contacts = [f"<sip:{self.user}@{self.contact_host}>"]
        seq = next(self._cseq) if cseq is None else cseq
        branch = "".join(c if c.isalnum() else "-" for c in call_id or self.call_id)
        lines = [
            f"REGISTER {ruri or 'sip:' + self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.contact_host};branch=z9hG4bK-{seq}-{branch}",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{self.domain}>;tag=f{seq}",
            f"To: {to or f'<sip:{self.user}@{self.domain}>'}",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {seq} REGISTER",
        ]
        lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization is not None:
            lines.append("Authorization: " + authorization.decode())
        lines += [f"{n}: {v}" for n, v in extra]
        lines.append("Content-Length: 0")
        msg = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert isinstance(msg, Request)
        return msg

    def answer(
        self,
        response: Response,
        password: str,
        *,
        algorithm: bytes = b"SHA-256",
        username: str | None = None,
        nc: int = 1,
        uri: str | None = None,
    ) -> bytes:
        """The Authorization value answering ``response``'s challenge for ``algorithm``."""
        challenge = pick(response, algorithm)
        creds = build_authorization(
            challenge,
            username=(username or self.user).encode(),
            method=b"REGISTER",
            uri=(uri or f"sip:{self.domain}").encode(),
            cnonce=b"0a4f113b",
            nc=nc,
            password=password.encode(),
        )
        return bytes(creds)


def pick(response: Response, algorithm: bytes) -> Challenge:
    """The challenge of ``response`` for ``algorithm``."""
    return next(c for c in response.www_authenticate if c.algorithm == algorithm)


def envelope(req: Request | bytes, *, source_port: int = 5060) -> Envelope:
    """An Envelope as the edge sends it for ``req``."""
    return Envelope(
        edge_id="edge-1",
        transport="udp",
        source_host="198.51.100.7",
        source_port=source_port,
        local_host="127.0.0.1",
        local_port=5060,
        received_at=1_700_000_000.0,
        data=bytes(req),
    )


class Kit:
    """The helpers above, for tests (conftest modules are not importable)."""

    DOMAIN = DOMAIN
    UA = UA
    subscriber = staticmethod(subscriber)
    table = staticmethod(table)
    pick = staticmethod(pick)
    envelope = staticmethod(envelope)


@pytest.fixture
def kit() -> type[Kit]:
    """The SIP test helpers."""
    return Kit


@pytest.fixture
def ua() -> UA:
    """Alice's phone."""
    return UA()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server 2.11+ with JetStream on a free loopback port, for the session.

    Overrides the root conftest's so that the registrar's buckets stay apart
    from other suites' in one pytest session; ``$NATS_URL`` points at an
    external server instead.
    """
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    server = NatsServer(store_dir=tmp_path_factory.mktemp("registrar-nats"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()

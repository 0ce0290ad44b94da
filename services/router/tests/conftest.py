"""Helpers for the router tests: SIP messages, envelopes, subscribers, a fake routing view."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from sipmesh_bus.natsserver import NatsServer
from sipmesh_bus.records import Binding, BindingSet, Subscriber, aor_key
from sipmesh_bus.schema import Envelope, Transport
from sipmesh_router.routes import Hop, Peer
from sipmsg import Request, Response, make_response, parse
from sipmsg.digest import build_authorization, ha1_md5, ha1_sha256

DOMAIN = "example.com"
SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0


def subscriber(user: str, password: str = "secret", domain: str = DOMAIN) -> Subscriber:
    u, d, p = user.encode(), domain.encode(), password.encode()
    return Subscriber(
        user=user,
        domain=domain,
        ha1_md5=ha1_md5(u, d, p).decode(),
        ha1_sha256=ha1_sha256(u, d, p).decode(),
    )


def binding(
    contact: str = "sip:bob@10.0.0.9:5060",
    *,
    host: str = "203.0.113.9",
    port: int = 40000,
    transport: Transport = "udp",
    connection_id: str | None = None,
    q: float | None = None,
    registered_at: float = NOW - 10,
) -> Binding:
    return Binding(
        contact=contact,
        expires_at=NOW + 600,
        call_id="reg@x",
        cseq=1,
        registered_at=registered_at,
        source_host=host,
        source_port=port,
        transport=transport,
        edge_id="edge-2",
        connection_id=connection_id,
        q=q,
    )


def bindings(user: str, *items: Binding) -> dict[str, BindingSet | None]:
    return {aor_key(user, DOMAIN): BindingSet(aor=f"sip:{user}@{DOMAIN}", bindings=list(items))}


def request(
    method: str = "INVITE",
    ruri: str = f"sip:bob@{DOMAIN}",
    *,
    from_: str = "sip:carol@other.net",
    from_tag: str = "ftag",
    to: str | None = None,
    to_tag: str | None = None,
    call_id: str = "call-1@host",
    branch: str = "z9hG4bKcaller1",
    extra: Sequence[tuple[str, str]] = (),
    max_forwards: int | None = 70,
    body: str = "",
) -> Request:
    to_value = f"<{to or ruri}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 10.1.1.1:5060;branch={branch};rport",
        f"From: <{from_}>;tag={from_tag}",
        f"To: {to_value}",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        "Contact: <sip:caller@10.1.1.1:5060>",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    lines += [f"{n}: {v}" for n, v in extra]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    msg = parse(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
    assert isinstance(msg, Request)
    return msg


def response(
    req: Request | bytes,
    status: int,
    *,
    to_tag: str = "ttag",
    extra: Sequence[tuple[str, str]] = (),
    body: str = "",
) -> Response:
    """A response to ``req`` (the forwarded request, with our Via on top)."""
    if isinstance(req, bytes):
        parsed = parse(req)
        assert isinstance(parsed, Request)
        req = parsed
    resp = make_response(
        req, status, to_tag=to_tag.encode(), headers=[(n.encode(), v.encode()) for n, v in extra]
    )
    if body:
        resp = resp.with_body(body.encode(), b"application/sdp")
    return resp


def envelope(
    msg: Request | Response | bytes,
    *,
    source: tuple[str, int] = ("198.51.100.7", 5060),
    transport: Transport = "udp",
    context: bytes | None = None,
    connection_id: str | None = None,
) -> Envelope:
    return Envelope(
        edge_id="edge-1",
        transport=transport,
        source_host=source[0],
        source_port=source[1],
        local_host="192.0.2.1",
        local_port=5060,
        connection_id=connection_id,
        received_at=NOW,
        data=bytes(msg),
        context=context,
    )


def proxy_authorization(
    resp: Response, user: str, password: str, ruri: str, method: str = "INVITE"
) -> str:
    challenge = next(c for c in resp.proxy_authenticate if c.algorithm == b"SHA-256")
    creds = build_authorization(
        challenge,
        username=user.encode(),
        method=method.encode(),
        uri=ruri.encode(),
        cnonce=b"0a4f113b",
        nc=1,
        password=password.encode(),
    )
    return bytes(creds).decode()


@dataclass
class FakeRouting:
    """A RoutingView with fixed answers."""

    peers: dict[str, Peer] = field(default_factory=dict)
    sets: dict[str, list[Hop]] = field(default_factory=dict)
    selectors: dict[str, str] = field(default_factory=dict)
    #: dialled user -> set id
    lcr: dict[str, list[Hop]] = field(default_factory=dict)

    def trusted_peer(self, host: str) -> Peer | None:
        return self.peers.get(host)

    def dispatcher_set_for(self, user: str, domain: str) -> str | None:
        return self.selectors.get(user)

    def set_destinations(
        self, set_id: str, *, call_id: str, from_user: str, now: float
    ) -> list[Hop]:
        return list(self.sets.get(set_id, []))

    def carriers(self, number: str) -> list[Hop]:
        return list(self.lcr.get(number, []))


class Kit:
    """The helpers above, for tests (conftest modules are not importable)."""

    DOMAIN = DOMAIN
    SECRET = SECRET
    NOW = NOW
    FakeRouting = FakeRouting
    subscriber = staticmethod(subscriber)
    binding = staticmethod(binding)
    bindings = staticmethod(bindings)
    request = staticmethod(request)
    response = staticmethod(response)
    envelope = staticmethod(envelope)
    proxy_authorization = staticmethod(proxy_authorization)


@pytest.fixture
def kit() -> type[Kit]:
    """The SIP test helpers."""
    return Kit


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server 2.11+ with JetStream on a free loopback port, for the session."""
    if os.environ.get("NATS_URL"):
        yield os.environ["NATS_URL"]
        return
    server = NatsServer(store_dir=tmp_path_factory.mktemp("router-nats"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()

"""RTPEngine's ng control protocol, sans-I/O: framing, cookies, commands, replies.

An ng message is one UDP datagram, ``<cookie> <bencoded dict>``; the reply carries
the same cookie, which is how replies are matched to requests (and how RTPEngine
recognises a retransmission and answers it from its cache instead of running
the command twice). ::

    codec = NgCodec(prefix=os.urandom(4).hex().encode())
    cookie, datagram = codec.request(offer(call_id=..., from_tag=..., sdp=sdp))
    ...                                 # the caller sends, waits, receives
    matched = codec.receive(reply_datagram)   # (cookie, NgResponse) or None

The commands an SBC needs are built from :class:`MediaOptions`: replace the
origin and session-connection addresses, ICE remove/force, the transport
protocol (RTP/AVP <-> RTP/SAVP(F) and UDP/TLS/RTP/SAVPF with DTLS for WebRTC),
which address to send media to (the SDP's, or the SIP source address for NATed
phones), symmetric RTP, and recording off. :func:`apply_flags` reads the same
settings from the flag words the Kamailio rtpengine module uses
(``"replace-origin ICE=remove RTP/AVP SIP-source-address"``), which is what
travels on the bus in ``MediaOffer.flags``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from . import bencode
from .bencode import BValue, EncodableValue
from .errors import NgProtocolError

__all__ = [
    "NATED",
    "PLAIN_RTP",
    "WEBRTC",
    "Address",
    "Body",
    "Ice",
    "MediaOptions",
    "NgCodec",
    "NgResponse",
    "Totals",
    "active_sessions",
    "answer",
    "apply_flags",
    "decode_message",
    "delete",
    "encode_message",
    "list_calls",
    "offer",
    "parse_response",
    "ping",
    "query",
    "query_totals",
    "statistics",
]

Body: TypeAlias = dict[str, EncodableValue]
#: A request dict, before encoding.
Ice: TypeAlias = Literal["remove", "force", "default", "force-relay"]
Address: TypeAlias = Literal["trust", "sip-source"]
Dtls: TypeAlias = Literal["off", "passive", "active"]
RtcpMux: TypeAlias = Literal["offer", "demux", "accept", "reject", "require"]

TRANSPORT_PROTOCOLS: Final = frozenset(
    {"RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"}
)
_ICE: Final = frozenset({"remove", "force", "default", "force-relay"})
_DTLS: Final = frozenset({"off", "passive", "active"})
_RTCP_MUX: Final = frozenset({"offer", "demux", "accept", "reject", "require"})
_FLAG_WORD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_COOKIE: Final = re.compile(rb"[\x21-\x7e]{1,64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaOptions:
    """How RTPEngine should rewrite one side's SDP (offer or answer)."""

    replace_origin: bool = True
    #: Rewrite the ``o=`` address too (topology hiding).
    replace_session_connection: bool = True
    #: Rewrite the session-level ``c=`` line, not only the media-level ones.
    ice: Ice | None = "remove"
    #: ``remove`` strips candidates (plain SIP phones); ``force`` adds RTPEngine's
    #: own (WebRTC). None leaves RTPEngine's default.
    transport_protocol: str | None = None
    #: The profile the recipient gets, e.g. ``RTP/AVP`` or ``UDP/TLS/RTP/SAVPF``;
    #: None keeps the one in the SDP.
    dtls: Dtls | None = None
    #: DTLS role towards the recipient (``passive`` for WebRTC browsers).
    rtcp_mux: tuple[RtcpMux, ...] = ()
    address: Address | None = None
    #: ``trust``: send media to the SDP's address; ``sip-source``: to the SIP
    #: packet's source address (``received_from``), for phones behind NAT.
    symmetric: bool | None = None
    #: True: latch onto where RTP comes from (NATed phones, RTPEngine's
    #: default); False: ``asymmetric``, send only where the SDP says.
    record_call: bool = False
    flags: tuple[str, ...] = ()
    #: Further ng flag words, passed through as they are.


_PLAIN_RTP: Final[dict[str, object]] = {
    "transport_protocol": "RTP/AVP",
    "ice": "remove",
    "dtls": None,
    "rtcp_mux": ("demux",),
}
_WEBRTC: Final[dict[str, object]] = {
    "transport_protocol": "UDP/TLS/RTP/SAVPF",
    "ice": "force",
    "dtls": "passive",
    "rtcp_mux": ("offer",),
}
_NATED: Final[dict[str, object]] = {"address": "sip-source", "symmetric": True}
_PROFILES: Final[dict[str, dict[str, object]]] = {
    "plain-rtp": _PLAIN_RTP,
    "webrtc": _WEBRTC,
    "nat": _NATED,
}

PLAIN_RTP: Final = MediaOptions(**_PLAIN_RTP)  # type: ignore[arg-type]
#: Towards a classic SIP phone or trunk: RTP/AVP, no ICE, RTCP on its own port.
WEBRTC: Final = MediaOptions(**_WEBRTC)  # type: ignore[arg-type]
#: Towards a WebRTC client: DTLS-SRTP with feedback profile, ICE, rtcp-mux.
NATED: Final = MediaOptions(**_NATED)  # type: ignore[arg-type]
#: From a phone behind NAT: ignore its private SDP address, learn the real one.


def apply_flags(options: MediaOptions, flags: Iterable[str]) -> MediaOptions:
    """Apply Kamailio-style rtpengine flag words to ``options``, left to right.

    Understood: ``replace-origin``, ``replace-session-connection``,
    ``no-replace``, ``ICE=remove|force|default|force-relay``, a transport
    protocol (``RTP/AVP`` ... or ``transport-protocol=...``),
    ``DTLS=off|passive|active``, ``rtcp-mux-<offer|demux|accept|reject|require>``,
    ``trust-address``, ``SIP-source-address``, ``symmetric``, ``asymmetric``,
    ``record-call=yes|no``, and the profiles ``webrtc``, ``plain-rtp`` and
    ``nat``. Any other plain word (letters, digits, ``-``) is passed through as
    an ng flag.

    Args:
        options: the starting point (e.g. the configured defaults).
        flags: the words; each may also hold several separated by spaces.

    Returns:
        The updated options.

    Raises:
        ValueError: a ``key=value`` word with an unknown key or value, or a word
            that is not a plain flag.
    """
    for word in (w for item in flags for w in item.split()):
        key, _, value = word.partition("=")
        low = key.lower()
        if word in TRANSPORT_PROTOCOLS or low == "transport-protocol":
            proto = value if low == "transport-protocol" else word
            if proto not in TRANSPORT_PROTOCOLS:
                raise ValueError(f"unknown transport protocol {proto!r}")
            options = dataclasses.replace(options, transport_protocol=proto)
        elif low == "ice" and value in _ICE:
            options = dataclasses.replace(options, ice=value)  # type: ignore[arg-type]
        elif low == "dtls" and value.lower() in _DTLS | {"no"}:
            dtls = "off" if value.lower() == "no" else value.lower()
            options = dataclasses.replace(options, dtls=dtls)  # type: ignore[arg-type]
        elif low == "record-call" and value in {"", "yes", "no", "on", "off"}:
            options = dataclasses.replace(options, record_call=value in {"", "yes", "on"})
        elif value:
            raise ValueError(f"unknown rtpengine flag {word!r}")
        elif low.startswith("rtcp-mux-") and low[9:] in _RTCP_MUX:
            mux = (*options.rtcp_mux, low[9:])
            options = dataclasses.replace(options, rtcp_mux=mux)  # type: ignore[arg-type]
        elif low in _PROFILES:
            options = dataclasses.replace(options, **_PROFILES[low])  # type: ignore[arg-type]
        else:
            options = _apply_word(options, low, word)
    return options


def _apply_word(options: MediaOptions, low: str, word: str) -> MediaOptions:
    match low:
        case "replace-origin":
            return dataclasses.replace(options, replace_origin=True)
        case "replace-session-connection":
            return dataclasses.replace(options, replace_session_connection=True)
        case "no-replace":
            return dataclasses.replace(
                options, replace_origin=False, replace_session_connection=False
            )
        case "trust-address":
            return dataclasses.replace(options, address="trust")
        case "sip-source-address":
            return dataclasses.replace(options, address="sip-source")
        case "symmetric" | "asymmetric":
            return dataclasses.replace(options, symmetric=low == "symmetric")
    if _FLAG_WORD.fullmatch(word) is None:
        raise ValueError(f"not an rtpengine flag word: {word!r}")
    return dataclasses.replace(options, flags=(*options.flags, word))


def _sdp_keys(options: MediaOptions) -> Body:
    body: Body = {}
    flags = list(options.flags)
    if options.address == "trust":
        flags.append("trust-address")
    elif options.address == "sip-source":
        flags.append("SIP-source-address")
    if options.symmetric is not None:
        flags.append("symmetric" if options.symmetric else "asymmetric")
    if flags:
        body["flags"] = flags
    replace = [
        name
        for name, on in (
            ("origin", options.replace_origin),
            ("session-connection", options.replace_session_connection),
        )
        if on
    ]
    if replace:
        body["replace"] = replace
    if options.ice is not None:
        body["ICE"] = options.ice
    if options.transport_protocol is not None:
        body["transport-protocol"] = options.transport_protocol
    if options.dtls is not None:
        body["DTLS"] = options.dtls
    if options.rtcp_mux:
        body["rtcp-mux"] = list(options.rtcp_mux)
    body["record call"] = "yes" if options.record_call else "no"
    return body


def ping() -> Body:
    """The ``ping`` command; RTPEngine answers ``result: pong``."""
    return {"command": "ping"}


def offer(
    *,
    call_id: str,
    from_tag: str,
    sdp: bytes,
    options: MediaOptions = MediaOptions(),
    to_tag: str | None = None,
    received_from: str | None = None,
    via_branch: str | None = None,
) -> Body:
    """The ``offer`` command: anchor the offerer's SDP; the reply holds the rewritten one.

    Args:
        call_id: the SIP Call-ID.
        from_tag: the From tag (the offerer's tag in an initial INVITE).
        sdp: the offer as received.
        options: rewriting and transport settings.
        to_tag: set for an offer inside a dialog (re-INVITE, UPDATE).
        received_from: the SIP packet's source IP, used with ``sip-source``.
        via_branch: the top Via branch, to tell forked branches apart.

    Returns:
        The request dict.
    """
    body: Body = {"command": "offer", "call-id": call_id, "from-tag": from_tag, "sdp": sdp}
    return _complete(body, options, to_tag, received_from, via_branch)


def answer(
    *,
    call_id: str,
    from_tag: str,
    to_tag: str,
    sdp: bytes,
    options: MediaOptions = MediaOptions(),
    received_from: str | None = None,
    via_branch: str | None = None,
) -> Body:
    """The ``answer`` command: anchor the answerer's SDP (183 or 200 with SDP).

    Args: as :func:`offer`; ``to_tag`` is the answerer's tag and required.

    Returns:
        The request dict.
    """
    body: Body = {"command": "answer", "call-id": call_id, "from-tag": from_tag, "sdp": sdp}
    return _complete(body, options, to_tag, received_from, via_branch)


def _complete(
    body: Body,
    options: MediaOptions,
    to_tag: str | None,
    received_from: str | None,
    via_branch: str | None,
) -> Body:
    if to_tag is not None:
        body["to-tag"] = to_tag
    if received_from is not None:
        body["received-from"] = ["IP6" if ":" in received_from else "IP4", received_from]
    if via_branch is not None:
        body["via-branch"] = via_branch
    body.update(_sdp_keys(options))
    return body


def delete(
    *,
    call_id: str,
    from_tag: str | None = None,
    to_tag: str | None = None,
    delete_delay: int | None = None,
) -> Body:
    """The ``delete`` command: release the call (or one branch of it).

    Args:
        call_id: the SIP Call-ID.
        from_tag: limit to this dialog (None: the whole call).
        to_tag: limit to this branch.
        delete_delay: seconds RTPEngine keeps the session; 0 frees it at once.

    Returns:
        The request dict.
    """
    body: Body = {"command": "delete", "call-id": call_id}
    if from_tag is not None:
        body["from-tag"] = from_tag
    if to_tag is not None:
        body["to-tag"] = to_tag
    if delete_delay is not None:
        body["delete delay"] = delete_delay
    return body


def query(*, call_id: str, from_tag: str | None = None) -> Body:
    """The ``query`` command: a call's streams and packet counters."""
    body: Body = {"command": "query", "call-id": call_id}
    if from_tag is not None:
        body["from-tag"] = from_tag
    return body


def list_calls(*, limit: int = 32) -> Body:
    """The ``list`` command: up to ``limit`` Call-IDs the instance holds."""
    return {"command": "list", "limit": limit}


def statistics() -> Body:
    """The ``statistics`` command: the instance's counters (RTPEngine 10 and later)."""
    return {"command": "statistics"}


# -- replies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NgResponse:
    """A parsed reply."""

    command: str
    #: The request's command (replies do not repeat it).
    result: str
    #: ``ok``, ``pong`` or ``error`` (RTPEngine may add others, e.g. ``load limit``).
    error_reason: str | None = None
    warning: str | None = None
    #: Set on success too, e.g. "Call-ID not found or tags didn't match" on delete.
    sdp: bytes | None = None
    body: dict[bytes, BValue] = field(default_factory=dict)
    #: The whole reply dict.

    @property
    def ok(self) -> bool:
        """True for ``ok`` and ``pong``."""
        return self.result in ("ok", "pong")

    @property
    def calls(self) -> list[str]:
        """The Call-IDs of a ``list`` reply."""
        calls = self.body.get(b"calls")
        if not isinstance(calls, list):
            return []
        return [c.decode(errors="replace") for c in calls if isinstance(c, bytes)]


def _text(body: Mapping[bytes, BValue], key: bytes) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise NgProtocolError(f"reply key {key.decode()!r} is not a string")
    return value.decode(errors="replace")


def parse_response(command: str, body: dict[bytes, BValue]) -> NgResponse:
    """Read ``result``, ``error-reason``, ``warning`` and ``sdp`` from a reply dict.

    Raises:
        NgProtocolError: no ``result``, or one of these keys is not a string.
    """
    result = _text(body, b"result")
    if result is None:
        raise NgProtocolError("reply without 'result'")
    sdp = body.get(b"sdp")
    if sdp is not None and not isinstance(sdp, bytes):
        raise NgProtocolError("reply 'sdp' is not a string")
    return NgResponse(
        command=command,
        result=result,
        error_reason=_text(body, b"error-reason"),
        warning=_text(body, b"warning"),
        sdp=sdp,
        body=body,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """Packet counters of a call, from a ``query`` reply."""

    packets: int = 0
    bytes: int = 0
    errors: int = 0


def query_totals(response: NgResponse) -> Totals:
    """Sum the RTP counters in a ``query`` reply's ``totals`` (0 when absent)."""
    totals = response.body.get(b"totals")
    rtp = totals.get(b"RTP") if isinstance(totals, dict) else None
    if not isinstance(rtp, dict):
        return Totals()

    def count(key: bytes) -> int:
        value = rtp.get(key)
        return value if isinstance(value, int) else 0

    return Totals(packets=count(b"packets"), bytes=count(b"bytes"), errors=count(b"errors"))


def active_sessions(response: NgResponse) -> int | None:
    """The sessions an instance runs itself, from a ``statistics`` reply.

    That is ``statistics.currentstatistics.sessionsown``: calls created on this
    instance, not the ``sessionsforeign`` it only holds as a replica (redis), so
    summing over instances counts each call once. A deleted call stays counted
    until its ``delete delay`` has passed, as it stays in ``list``.

    Returns:
        The count, or None when the reply does not carry it.
    """
    stats = response.body.get(b"statistics")
    current = stats.get(b"currentstatistics") if isinstance(stats, dict) else None
    own = current.get(b"sessionsown") if isinstance(current, dict) else None
    return own if isinstance(own, int) else None


# -- framing and cookies -----------------------------------------------------------


def encode_message(cookie: bytes, body: Mapping[str, EncodableValue]) -> bytes:
    """``<cookie> <bencoded body>``.

    Raises:
        ValueError: the cookie is empty, too long or holds a space or control byte.
    """
    if _COOKIE.fullmatch(cookie) is None:
        raise ValueError(f"bad ng cookie {cookie!r}")
    return cookie + b" " + bencode.encode(body)


def decode_message(data: bytes) -> tuple[bytes, dict[bytes, BValue]]:
    """Split a datagram into its cookie and its dict.

    Raises:
        NgProtocolError: no cookie, no space, or the rest is not one bencoded dict.
    """
    cookie, space, rest = data.partition(b" ")
    if not space or _COOKIE.fullmatch(cookie) is None:
        raise NgProtocolError("ng message without a '<cookie> ' prefix")
    body = bencode.decode(rest)
    if not isinstance(body, dict):
        raise NgProtocolError("ng message body is not a dict")
    return cookie, body


class NgCodec:
    """Cookies for outgoing requests, and matching of replies to them.

    Cookies are ``<prefix><counter>``: unique per codec, and across processes
    when the prefix is random (the caller supplies it: no randomness here).
    """

    def __init__(self, *, prefix: bytes) -> None:
        if _COOKIE.fullmatch(prefix + b"0") is None or len(prefix) > 40:
            raise ValueError(f"bad cookie prefix {prefix!r}")
        self._prefix = prefix
        self._counter = 0
        self._pending: dict[bytes, str] = {}

    def request(self, body: Mapping[str, EncodableValue]) -> tuple[bytes, bytes]:
        """Give ``body`` a fresh cookie; remember it until its reply or :meth:`forget`.

        Returns:
            ``(cookie, datagram)``; send the same datagram again to retry.
        """
        self._counter += 1
        cookie = self._prefix + b"%d" % self._counter
        command = body.get("command")
        self._pending[cookie] = command if isinstance(command, str) else ""
        return cookie, encode_message(cookie, body)

    def receive(self, data: bytes) -> tuple[bytes, NgResponse] | None:
        """Match a reply datagram to its request.

        Returns:
            ``(cookie, response)``, or None for a cookie nobody waits for (a late
            duplicate of a retried request).

        Raises:
            NgProtocolError: the datagram is malformed.
        """
        cookie, body = decode_message(data)
        command = self._pending.pop(cookie, None)
        if command is None:
            return None
        return cookie, parse_response(command, body)

    def forget(self, cookie: bytes) -> None:
        """Stop waiting for ``cookie`` (its request timed out)."""
        self._pending.pop(cookie, None)

    @property
    def pending(self) -> int:
        """How many requests wait for a reply."""
        return len(self._pending)

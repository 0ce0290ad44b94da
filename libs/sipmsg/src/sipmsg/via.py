"""Via header values (RFC 3261 §20.42, §18.2.1; RFC 3581 rport; RFC 5118 IPv6).

RFC 3261 §25.1::

    via-parm       =  sent-protocol LWS sent-by *( SEMI via-params )
    sent-protocol  =  protocol-name SLASH protocol-version SLASH transport
    sent-by        =  host [ COLON port ]
    via-params     =  via-ttl / via-maddr / via-received / via-branch / via-extension
    via-received   =  "received" EQUAL (IPv4address / IPv6address)
    via-branch     =  "branch" EQUAL token

RFC 3581 §3 adds ``response-port = "rport" [EQUAL 1*DIGIT]``.

The top Via is read for every message that crosses the edge, so the common
shape (``SIP/2.0/UDP host:port;branch=...``) takes a short path of plain
bytes methods.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Final

from ._abnf import (
    _IPV4_RE,
    HOSTNAME,
    IPV4ADDRESS,
    TOKEN,
    TOKEN_CHARS,
    WS,
    Params,
    check_gen_values,
    check_host,
    format_params,
    ip_key,
    is_token,
    param,
    param_item,
    parse_params,
    parse_port,
    set_param,
    slot_setters,
    split_comma,
    split_hostport,
)
from ._errors import ParseError
from ._native import python_class

__all__ = [
    "MAGIC_COOKIE",
    "Via",
    "is_rfc3261_branch",
    "make_via",
    "parse_via",
    "parse_via_list",
]

MAGIC_COOKIE: Final = b"z9hG4bK"
"""RFC 3261 §8.1.1.7: "The branch ID inserted by an element compliant with this
specification MUST always begin with the characters "z9hG4bK"."."""

# The shape nearly every Via has, matched in one go (host and port are still
# checked after): "SIP/2.0/UDP host:port;params". Anything else (white space
# around "/" or ":", IPv6, lower-case "sip") takes the general path.
_COMMON_RE: Final = re.compile(
    rb"SIP/2\.0/(" + TOKEN + rb") ([A-Za-z0-9._\-]+)(?::([0-9]{1,5}))?(?:;(.*))?", re.DOTALL
)

# The same shape with the host and every parameter checked by the regex: the
# host is a hostname or an IPv4 address, each parameter ";token[=gen-value]"
# (gen-value = token / host, no quotes); only the port range and the
# parameters with their own grammar (branch, received ...) are left to check.
_FAST_RE: Final = re.compile(
    rb"SIP/2\.0/(" + TOKEN + rb") (" + IPV4ADDRESS + rb"|" + HOSTNAME + rb")(?::([0-9]{1,5}))?"
    rb"((?:;" + TOKEN + rb"(?:=[A-Za-z0-9\-.!%*_+`'~\[\]:]+)?)*)"
)


def is_rfc3261_branch(branch: bytes | None) -> bool:
    """True when ``branch`` starts with the magic cookie and has more after it.

    Without the cookie the sender follows RFC 2543, and transactions must be
    matched the old way (§17.2.3).
    """
    return (
        branch is not None and len(branch) > len(MAGIC_COOKIE) and branch.startswith(MAGIC_COOKIE)
    )


@python_class
@dataclass(frozen=True, slots=True, kw_only=True)
class Via:
    """One via-parm. ``bytes()`` of a parsed value returns it as written."""

    protocol: bytes = b"SIP/2.0"
    #: protocol-name "/" protocol-version, the name upper-cased.
    transport: bytes
    #: Upper-cased: UDP, TCP, TLS, SCTP, WS, WSS, or any other token.
    host: bytes
    #: The sent-by host: a hostname, an IPv4 address or a bracketed IPv6 reference.
    port: int | None = None
    #: The sent-by port, None when absent.
    params: Params = ()
    #: Parameters in order: (lower-cased name, raw value or None).
    _raw: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __bytes__(self) -> bytes:
        if self._raw is not None:
            return self._raw
        out = self.protocol + b"/" + self.transport + b" " + self.sent_by
        return out + format_params(self.params)

    @property
    def sent_by(self) -> bytes:
        """``host[:port]`` as it would be written."""
        return self.host if self.port is None else self.host + b":%d" % self.port

    @property
    def branch(self) -> bytes | None:
        """The branch parameter, or None (an RFC 2543 peer may send none)."""
        return param(self.params, b"branch")

    @property
    def received(self) -> bytes | None:
        """The received parameter as written (IPv6 with or without brackets), or None."""
        return param(self.params, b"received")

    @property
    def rport(self) -> int | None:
        """The rport value filled in by a server (RFC 3581 §4), or None."""
        value = param(self.params, b"rport")
        return int(value) if value else None

    @property
    def has_rport(self) -> bool:
        """True when ``rport`` is present, with or without a value.

        ``has_rport and rport is None`` is a client asking for symmetric
        response routing (RFC 3581 §3).
        """
        return param(self.params, b"rport") is not None

    @property
    def maddr(self) -> bytes | None:
        """The maddr parameter, or None."""
        return param(self.params, b"maddr")

    @property
    def ttl(self) -> int | None:
        """The ttl parameter (checked to be 0..255 when parsed), or None."""
        value = param(self.params, b"ttl")
        return None if value is None else int(value)

    def with_param(self, name: bytes, value: bytes | None = None) -> Via:
        """A copy with parameter ``name`` (lower-case) set in place or appended."""
        return dataclasses.replace(self, params=set_param(self.params, name, value))

    def with_received(self, source_host: bytes, source_port: int) -> Via:
        """The Via a server keeps after receiving a request from ``source_host:source_port``.

        RFC 3261 §18.2.1: "If the host portion of the "sent-by" parameter
        contains a domain name, or if it contains an IP address that differs
        from the packet source address, the server MUST add a "received"
        parameter". RFC 3581 §4: when rport is present without a value the
        server "MUST set the value of the parameter to the source port" and
        "MUST add a received parameter ... even if it is identical to the
        value of the 'sent-by' component".

        Args:
            source_host: the packet's source IP address (IPv6 with or without
                brackets); written without brackets, as the RFC 3261 ABNF has it.
            source_port: the packet's source port.

        Returns:
            ``self`` when nothing needs adding, else a changed copy.
        """
        if source_host[:1] == b"[":
            source_host = source_host[1:-1]
        rport_asked = param(self.params, b"rport") == b""
        host = self.host
        if host == source_host and _IPV4_RE.fullmatch(host) is not None:
            differs = False  # the same IPv4 literal, written the same way
        else:
            key = ip_key(host)
            differs = key is None or key != ip_key(source_host)
        if not differs and not rport_asked:
            return self
        params = set_param(self.params, b"received", source_host)
        if rport_asked:
            params = set_param(params, b"rport", b"%d" % source_port)
        return _new_via(self.protocol, self.transport, host, self.port, params, raw=None)


_VIA_SETTERS: Final = slot_setters(Via, "protocol", "transport", "host", "port", "params", "_raw")


def make_via(
    *,
    transport: bytes,
    host: bytes,
    port: int | None = None,
    branch: bytes,
    rport: bool = False,
    params: Params = (),
) -> Via:
    """Build the Via an element puts on a request it sends (RFC 3261 §8.1.1.7, §16.6).

    Args:
        transport: UDP, TCP, TLS, SCTP, WS, WSS (any case).
        host: the sent-by host (IPv6 in brackets).
        port: the sent-by port, or None.
        branch: the branch, normally ``MAGIC_COOKIE + something unique``.
        rport: add ``;rport`` to ask for symmetric responses (RFC 3581).
        params: extra parameters, written after branch and rport.
    """
    head: Params = ((b"branch", branch),)
    if rport:
        head += ((b"rport", None),)
    return Via(transport=transport.upper(), host=host, port=port, params=head + params)


def parse_via(data: bytes) -> Via:
    """Parse one via-parm.

    Raises:
        ParseError: (status_hint 400) a malformed sent-protocol, sent-by or
            parameter.
    """
    # A value cut from a header line is stripped already: no strip() call.
    n = len(data)
    plain = n > 0 and data[0] not in (0x20, 0x09) and data[n - 1] not in (0x20, 0x09)
    value = data if plain else data.strip(WS)
    try:
        return _parse_via(value)
    except ParseError as exc:
        if exc.header is None:
            exc.header = "via"
        raise


def _parse_via(value: bytes) -> Via:
    m = _FAST_RE.fullmatch(value)
    if m is not None:
        transport, host, port_bytes, param_bytes = m.groups()
        port = None if port_bytes is None else int(port_bytes)
        if port is None or port <= 65535:
            params = _fast_via_params(param_bytes) if param_bytes else ()
            upper = _TRANSPORTS.get(transport)
            if upper is None:
                upper = transport.upper()
            return _new_via(b"SIP/2.0", upper, host, port, params, raw=value)
    return _parse_via_general(value)


def _parse_via_general(value: bytes) -> Via:
    """_parse_via for any via-parm: the precise error where _FAST_RE declines."""
    m = _COMMON_RE.fullmatch(value)
    if m is not None:
        transport, host, port_bytes, param_bytes = m.groups()
        check_host(host)
        port = None if port_bytes is None else parse_port(port_bytes)
        protocol = b"SIP/2.0"
    else:
        protocol, transport, rest = _sent_protocol(value)
        if not is_token(transport):
            raise ParseError(f"bad Via transport {transport!r}")
        semi = rest.find(b";")
        host, port = split_hostport((rest if semi < 0 else rest[:semi]).strip(WS), lws=True)
        param_bytes = None if semi < 0 else rest[semi + 1 :]
    params = () if param_bytes is None else _parse_via_params(param_bytes)
    return _new_via(protocol, transport.upper(), host, port, params, raw=value)


def _new_via(
    protocol: bytes,
    transport: bytes,
    host: bytes,
    port: int | None,
    params: Params,
    *,
    raw: bytes | None,
) -> Via:
    # The frozen dataclass's __init__ costs twice as much as the slot setters.
    via = object.__new__(Via)
    set_protocol, set_transport, set_host, set_port, set_params, set_raw = _VIA_SETTERS
    set_protocol(via, protocol)
    set_transport(via, transport)
    set_host(via, host)
    set_port(via, port)
    set_params(via, params)
    set_raw(via, raw)
    return via


def _sent_protocol(value: bytes) -> tuple[bytes, bytes, bytes]:
    # sent-protocol = protocol-name SLASH protocol-version SLASH transport
    # SLASH = SWS "/" SWS, so "SIP / 2.0 / UDP" is allowed (RFC 4475 wsinv).
    name, _, rest = value.partition(b"/")
    version, _, rest = rest.partition(b"/")
    name = name.strip(WS)
    version = version.strip(WS)
    if not is_token(name) or not is_token(version):
        raise ParseError(f"bad Via sent-protocol {value[:40]!r}")
    rest = rest.lstrip(WS)
    end = 0
    while end < len(rest) and rest[end] not in WS:
        end += 1
    if end == len(rest):
        raise ParseError("Via without sent-by")
    return name.upper() + b"/" + version, rest[:end], rest[end + 1 :]


def _fast_via_params(value: bytes) -> Params:
    """The parameters _FAST_RE matched (``;name[=value]`` each, ``value`` starting at ";").

    Names are tokens and values gen-values by the regex: only the parameters
    with a grammar of their own are checked further.
    """
    items: list[tuple[bytes, bytes | None]] = []
    for item in value[1:].split(b";"):
        name, val = param_item(item)
        if name in _CHECKED_PARAMS:
            _check_via_param(name, val)
        items.append((name, val))
    return tuple(items)


def _parse_via_params(value: bytes) -> Params:
    if value.find(b'"') >= 0 or value.find(b" ") >= 0 or value.find(b"\t") >= 0:
        params = parse_params(value)
    else:
        # The common shape, without quotes or white space: the same result as
        # parse_params (empty items skipped, names lower-cased), faster.
        items: list[tuple[bytes, bytes | None]] = []
        for item in value.split(b";"):
            if not item:
                continue
            name, eq, raw = item.partition(b"=")
            if not name or name.translate(None, TOKEN_CHARS):
                raise ParseError(f"bad parameter name {name!r}")
            if eq and not raw:
                raise ParseError(f"empty value for parameter {name!r}")
            items.append((name.lower(), raw if eq else None))
        params = tuple(items)
    for name, val in params:
        if name in _CHECKED_PARAMS:
            _check_via_param(name, val)
        elif val is not None and val[0] != 0x22:
            check_gen_values(((name, val),))
    return params


_CHECKED_PARAMS: Final = frozenset({b"branch", b"received", b"rport", b"ttl", b"maddr"})
# The usual spellings of the usual transports (a constant table).
_TRANSPORTS: Final = {
    t: t.upper()
    for t in (b"UDP", b"TCP", b"TLS", b"WS", b"WSS", b"SCTP", b"udp", b"tcp", b"tls", b"ws", b"wss")
}


def _check_via_param(name: bytes, val: bytes | None) -> None:
    # via-params = via-ttl / via-maddr / via-received / via-branch / via-extension
    if name == b"branch":
        if val is None or val.translate(None, TOKEN_CHARS):
            raise ParseError(f"bad Via branch {val!r}")
    elif name == b"received":
        # RFC 5118 §4.5 shows received=[2001:db8::9:255]: accept the
        # reference as well as the ABNF's bare IPv6address.
        if val is None or (_IPV4_RE.fullmatch(val) is None and ip_key(val) is None):
            raise ParseError(f"bad Via received {val!r}")
    elif name == b"rport":
        if val is not None:
            parse_port(val)
    elif name == b"ttl":
        if val is None or not val.isdigit() or len(val) > 3 or int(val) > 255:
            raise ParseError(f"bad Via ttl {val!r}")
    elif val is None:  # maddr
        raise ParseError("Via maddr without a value")
    else:
        check_host(val)


def parse_via_list(data: bytes) -> tuple[Via, ...]:
    """Parse a Via header value that may hold several comma-separated via-parms.

    Raises:
        ParseError: the value is empty or a via-parm is malformed.
    """
    if data.find(b",") < 0:
        return (parse_via(data),)
    parts = split_comma(data)
    if not parts:
        raise ParseError("empty Via")
    return tuple(parse_via(p) for p in parts)

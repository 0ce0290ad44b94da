"""What requests and responses share: the header block and the typed accessors.

Private; :mod:`sipmsg.message` builds :class:`~sipmsg.message.Request` and
:class:`~sipmsg.message.Response` on :class:`_Message`. Each typed accessor
parses its header on first use and caches the result in an explicit slot.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable
from typing import Final, Self, TypeVar, cast

from ._abnf import ALPHA, DIGIT, WS, split_comma
from ._errors import ParseError
from .address import (
    Address,
    Star,
    parse_address,
    parse_address_list,
    parse_contact_list,
    plain_address_ok,
)
from .digest import Challenge, Credentials, parse_challenge, parse_credentials
from .headers import (
    CSeq,
    Headers,
    MediaType,
    display_name,
    parse_cseq,
    parse_media_type,
    parse_token_list,
    parse_uint,
    quick_param,
)
from .via import Via, parse_via, parse_via_list

# callid = word [ "@" word ]  (§25.1); word = 1*(alphanum / "-" / "." / "!" /
# "%" / "*" / "_" / "+" / "`" / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" /
# DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
_WORD_CHARS: Final = ALPHA + DIGIT + b"-.!%*_+`'~()<>:\\\"/[]?{}"


class _Unset(enum.Enum):
    UNSET = 0


_UNSET: Final = _Unset.UNSET
_FROM_CHECKED: Final = 1
_TO_CHECKED: Final = 2
T = TypeVar("T")


class _Message:
    """What requests and responses share: headers, body, the typed accessors.

    A native class when compiled (not a :func:`~sipmsg._native.python_class`):
    its fields are C struct members, so filling and reading the ~30 caches
    is a store or a load each instead of a generic attribute call. It is
    built only through the constructors (``Request(..., _trusted=True)`` on
    the wire path), never ``object.__new__``.
    """

    __slots__ = (
        "_call_id",
        "_checked",
        "_contact",
        "_content_length",
        "_cseq",
        "_data",
        "_from",
        "_from_tag",
        "_max_forwards",
        "_rare",
        "_record_route",
        "_route",
        "_to",
        "_to_tag",
        "_top_via",
        "_via",
        "body",
        "headers",
        "version",
    )

    headers: Headers
    """The header lines, in wire order."""
    body: bytes
    """The body: exactly Content-Length octets."""
    version: bytes
    """The SIP version, ``b"SIP/2.0"``."""
    # The wire form (kept from parse, or built by bytes()) and the accessor
    # caches; _reset_cache empties them all.
    _data: bytes | None
    _checked: int  # _FROM_CHECKED | _TO_CHECKED: check_address_header passed
    _content_length: int | None
    _via: tuple[Via, ...] | None
    _top_via: Via | None
    _call_id: bytes | None
    _cseq: CSeq | None
    _from: Address | None
    _to: Address | None
    _from_tag: bytes | _Unset | None
    _to_tag: bytes | _Unset | None
    _contact: tuple[Address, ...] | Star | None
    _route: tuple[Address, ...] | None
    _record_route: tuple[Address, ...] | None
    _rare: _Rare | None  # the caches of the headers a call seldom reads
    _max_forwards: int | _Unset | None

    # -- serialization ---------------------------------------------------

    def _start_line(self) -> bytes:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        data = self._data
        if data is None:
            # One join: start CRLF line CRLF ... line CRLF CRLF body.
            data = self._data = b"\r\n".join(
                [self._start_line(), *self.headers.lines, b"", self.body]
            )
        return data

    def __eq__(self, other: object) -> bool:
        # The exact type, not isinstance: mypyc compiles isinstance against a
        # Python (non-native) class as an exact type test, blind to subclasses.
        # A Request and a Response are then unequal, as two messages are.
        if type(other) is not type(self):
            return NotImplemented
        return bytes(self) == bytes(other)

    def __hash__(self) -> int:
        return hash(bytes(self))

    # -- raw access --------------------------------------------------------

    def header(self, name: bytes | str) -> bytes | None:
        """The first value of header ``name`` (any case, or its compact form), or None.

        For list headers (Via, Contact ...) that is the first element; see
        :meth:`Headers.get_all`.
        """
        values = self.headers.get_all(name)
        return values[0] if values else None

    # -- editing -----------------------------------------------------------

    def _copy(self, headers: Headers, body: bytes) -> _Message:
        """A message of the same type and start line with ``headers`` and ``body``, caches empty."""
        raise NotImplementedError

    def _with(self, headers: Headers, body: bytes) -> Self:
        return cast(Self, self._copy(headers, body))

    def with_header(self, name: bytes, value: bytes) -> Self:
        """A copy with ``name: value`` appended after the last header line."""
        return self._with(self.headers.append(name, value), self.body)

    def prepend_header(self, name: bytes, value: bytes) -> Self:
        """A copy with ``name: value`` before the first header line (a proxy's Via)."""
        return self._with(self.headers.prepend(name, value), self.body)

    def replace_header(self, name: bytes, value: bytes) -> Self:
        """A copy where header ``name`` has the single value ``value``, in place of the first."""
        return self._with(self.headers.replace(name, value), self.body)

    def remove_header(self, name: bytes | str) -> Self:
        """A copy without any line of header ``name``."""
        return self._with(self.headers.remove(name), self.body)

    def replace_line(self, index: int, value: bytes) -> Self:
        """A copy where header line ``index`` holds ``value`` (see :meth:`Headers.replace_line`)."""
        return self._with(self.headers.replace_line(index, value), self.body)

    def remove_line(self, index: int) -> Self:
        """A copy without header line ``index`` (see :meth:`Headers.remove_line`)."""
        return self._with(self.headers.remove_line(index), self.body)

    def with_body(self, body: bytes, content_type: bytes | None = None) -> Self:
        """A copy with ``body``, Content-Length set to match and, if given, Content-Type.

        An empty body with no ``content_type`` removes Content-Type.
        """
        headers = self.headers
        if content_type is not None:
            headers = headers.replace(b"Content-Type", content_type)
        elif not body:
            headers = headers.remove(b"content-type")
        headers = headers.replace(b"Content-Length", b"%d" % len(body))
        return self._with(headers, body)

    # -- typed accessors ---------------------------------------------------

    @property
    def via(self) -> tuple[Via, ...]:
        """Every Via value, top first (empty when there is none)."""
        v = self._via
        if v is None:
            v = self._via = _vias(self)
        return v

    @property
    def top_via(self) -> Via | None:
        """The top Via value alone (None when there is no Via), the others left unparsed.

        What matching a response to its client transaction reads (§17.1.3: "the
        branch parameter in the top Via header field") and what a response is
        sent by (§18.2.2). Equal to ``via[0]``; a malformed later Via value is
        not noticed here (``via`` raises for it).

        Raises:
            ParseError: the top Via value is malformed (the header is named).
        """
        v = self._via
        if v is not None:
            return v[0] if v else None
        top = self._top_via
        if top is None:
            line = self.headers.single(b"via")[1]
            if line is None:
                return None
            try:
                top = self._top_via = _first_via(line)
            except ParseError as exc:
                raise _renamed(b"via", exc) from exc
        return top

    @property
    def call_id(self) -> bytes:
        """The Call-ID. Raises ParseError when missing, repeated or malformed."""
        v = self._call_id
        if v is None:
            raw = _single(self, b"call-id", required=True)
            assert raw is not None
            if not call_id_ok(raw):
                raise ParseError("bad Call-ID header", header="call-id")
            v = self._call_id = raw
        return v

    @property
    def cseq(self) -> CSeq:
        """The CSeq. Raises ParseError when missing, repeated or malformed."""
        v = self._cseq
        if v is None:
            raw = _single(self, b"cseq", required=True)
            assert raw is not None
            v = self._cseq = parse_cseq(raw)
        return v

    @property
    def from_(self) -> Address:
        """The From address. Raises ParseError when missing, repeated or malformed."""
        v = self._from
        if v is None:
            raw = _single(self, b"from", required=True)
            assert raw is not None
            # Called directly, not through _wrap: a compiled direct call.
            try:
                v = self._from = parse_address(raw)
            except ParseError as exc:
                raise _renamed(b"from", exc) from exc
        return v

    @property
    def to(self) -> Address:
        """The To address. Raises ParseError when missing, repeated or malformed."""
        v = self._to
        if v is None:
            raw = _single(self, b"to", required=True)
            assert raw is not None
            try:
                v = self._to = parse_address(raw)
            except ParseError as exc:
                raise _renamed(b"to", exc) from exc
        return v

    # -- classifying fast paths ---------------------------------------------

    def check_from_to(self) -> None:
        """Raise the ParseError ``from_`` or ``to`` would raise; build neither when both are plain.

        For a check that only needs From and To to be well formed (a
        response copies them raw, §8.2.6.2; ``make_response`` uses it): a
        name-addr of the usual shape (the one regex of the fast path) is
        known valid without its :class:`Address` and URI being built
        (~1.1 µs each compiled). Anything else is parsed, and cached, as by
        the accessors, so the errors are theirs: missing, repeated or
        malformed, naming the header.
        """
        check_address_header(self, b"from")
        check_address_header(self, b"to")

    @property
    def via_branch(self) -> bytes | None:
        """The top Via's branch, read without parsing the whole Via when it is plain.

        The edge's classifying parse; the value is that of ``via[0].branch``,
        but the rest of the Via is not validated.
        """
        if self._via is None:
            top = self.headers.single(b"via")[1]
            if top is None:
                return None
            if top.find(b",") >= 0:
                top = split_comma(top)[0]
            ok, value = quick_param(top, b";branch=")
            if ok:
                return value
        via = self.top_via
        return None if via is None else via.branch

    @property
    def from_tag(self) -> bytes | None:
        """From's tag, like ``from_.tag`` but without validating the rest of From."""
        v = self._from_tag
        if v is _UNSET:
            # Cached like the parsed headers (an edit makes a new message).
            ok, v = False, None
            if self._from is None:
                ok, v = _quick_tag(_single(self, b"from", required=True) or b"")
            if not ok:
                v = self.from_.tag
            self._from_tag = v
        return v

    @property
    def to_tag(self) -> bytes | None:
        """To's tag, like ``to.tag`` but without validating the rest of To."""
        v = self._to_tag
        if v is _UNSET:
            ok, v = False, None
            if self._to is None:
                ok, v = _quick_tag(_single(self, b"to", required=True) or b"")
            if not ok:
                v = self.to.tag
            self._to_tag = v
        return v

    @property
    def contact(self) -> tuple[Address, ...] | Star:
        """Every Contact value, or :class:`Star` for ``Contact: *`` (§10.2.2)."""
        v = self._contact
        if v is None:
            v = self._contact = _contacts(self)
        return v

    @property
    def route(self) -> tuple[Address, ...]:
        """Every Route value, in order."""
        v = self._route
        if v is None:
            v = self._route = _each(self, b"route", parse_address_list)
        return v

    @property
    def record_route(self) -> tuple[Address, ...]:
        """Every Record-Route value, in order."""
        v = self._record_route
        if v is None:
            v = self._record_route = _each(self, b"record-route", parse_address_list)
        return v

    @property
    def path(self) -> tuple[Address, ...]:
        """Every Path value (RFC 3327), in order."""
        c = _rare(self)
        v = c.path
        if v is None:
            v = c.path = _each(self, b"path", parse_address_list)
        return v

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, 0-255 (§20.22), or None when absent."""
        v = self._max_forwards
        if v is _UNSET:
            v = self._max_forwards = _typed(self, b"max-forwards", _max_forwards)
        return v

    @property
    def expires(self) -> int | None:
        """Expires in seconds (§20.19), or None when absent."""
        c = _rare(self)
        v = c.expires
        if v is _UNSET:
            v = c.expires = _typed(self, b"expires", _expires)
        return v

    @property
    def content_length(self) -> int:
        """Content-Length, or the body's length when the header is absent."""
        v = self._content_length
        if v is None:
            raw = _single(self, b"content-length", required=False)
            v = len(self.body) if raw is None else parse_uint(raw, header="content-length")
            self._content_length = v
        return v

    @property
    def content_type(self) -> MediaType | None:
        """Content-Type, or None when absent."""
        c = _rare(self)
        v = c.content_type
        if v is _UNSET:
            v = c.content_type = _typed(self, b"content-type", parse_media_type)
        return v

    @property
    def user_agent(self) -> bytes | None:
        """The raw User-Agent value, or None."""
        c = _rare(self)
        v = c.user_agent
        if v is _UNSET:
            v = c.user_agent = self.headers.get(b"user-agent")
        return v

    @property
    def allow(self) -> tuple[bytes, ...]:
        """The methods in Allow."""
        c = _rare(self)
        v = c.allow
        if v is None:
            v = c.allow = _tokens(self, b"allow")
        return v

    @property
    def supported(self) -> tuple[bytes, ...]:
        """The option-tags in Supported."""
        c = _rare(self)
        v = c.supported
        if v is None:
            v = c.supported = _tokens(self, b"supported")
        return v

    @property
    def require(self) -> tuple[bytes, ...]:
        """The option-tags in Require (answer 420 for the ones you lack, §8.2.2.3)."""
        c = _rare(self)
        v = c.require
        if v is None:
            v = c.require = _tokens(self, b"require")
        return v

    @property
    def proxy_require(self) -> tuple[bytes, ...]:
        """The option-tags in Proxy-Require."""
        c = _rare(self)
        v = c.proxy_require
        if v is None:
            v = c.proxy_require = _tokens(self, b"proxy-require")
        return v

    @property
    def unsupported(self) -> tuple[bytes, ...]:
        """The option-tags in Unsupported."""
        c = _rare(self)
        v = c.unsupported
        if v is None:
            v = c.unsupported = _tokens(self, b"unsupported")
        return v

    @property
    def www_authenticate(self) -> tuple[Challenge, ...]:
        """Every WWW-Authenticate challenge, one per header line."""
        c = _rare(self)
        v = c.www_authenticate
        if v is None:
            v = c.www_authenticate = _per_line(self, b"www-authenticate", parse_challenge)
        return v

    @property
    def proxy_authenticate(self) -> tuple[Challenge, ...]:
        """Every Proxy-Authenticate challenge, one per header line."""
        c = _rare(self)
        v = c.proxy_authenticate
        if v is None:
            v = c.proxy_authenticate = _per_line(self, b"proxy-authenticate", parse_challenge)
        return v

    @property
    def authorization(self) -> tuple[Credentials, ...]:
        """Every Authorization credential, one per header line."""
        c = _rare(self)
        v = c.authorization
        if v is None:
            v = c.authorization = _per_line(self, b"authorization", parse_credentials)
        return v

    @property
    def proxy_authorization(self) -> tuple[Credentials, ...]:
        """Every Proxy-Authorization credential, one per header line."""
        c = _rare(self)
        v = c.proxy_authorization
        if v is None:
            v = c.proxy_authorization = _per_line(self, b"proxy-authorization", parse_credentials)
        return v


class _Rare:
    """The accessor caches of the headers a call seldom reads (made on first use).

    Kept out of :class:`_Message` so that a message is a smaller struct to
    fill, clear and free: most messages never need these.
    """

    def __init__(self) -> None:
        self.path: tuple[Address, ...] | None = None
        self.expires: int | _Unset | None = _UNSET
        self.content_type: MediaType | _Unset | None = _UNSET
        self.user_agent: bytes | _Unset | None = _UNSET
        self.allow: tuple[bytes, ...] | None = None
        self.supported: tuple[bytes, ...] | None = None
        self.require: tuple[bytes, ...] | None = None
        self.proxy_require: tuple[bytes, ...] | None = None
        self.unsupported: tuple[bytes, ...] | None = None
        self.www_authenticate: tuple[Challenge, ...] | None = None
        self.proxy_authenticate: tuple[Challenge, ...] | None = None
        self.authorization: tuple[Credentials, ...] | None = None
        self.proxy_authorization: tuple[Credentials, ...] | None = None


def _rare(msg: _Message) -> _Rare:
    c = msg._rare
    if c is None:
        c = msg._rare = _Rare()
    return c


def _reset_cache(msg: _Message, data: bytes | None) -> None:
    """Empty every accessor cache of ``msg``; ``data`` is its wire form, when known.

    A module function, not a method (from when _Message was a Python class,
    whose methods compiled code calls through a bound method object).
    """
    msg._data = data
    msg._checked = 0
    msg._content_length = None
    msg._via = None
    msg._top_via = None
    msg._call_id = None
    msg._cseq = None
    msg._from = None
    msg._to = None
    msg._from_tag = _UNSET
    msg._to_tag = _UNSET
    msg._contact = None
    msg._route = None
    msg._record_route = None
    msg._rare = None
    msg._max_forwards = _UNSET


def call_id_ok(raw: bytes) -> bool:
    """True when ``raw`` is a callid (``word [ "@" word ]``): one translate, no regex."""
    rest = raw.translate(None, _WORD_CHARS)
    if not rest:
        return len(raw) > 0
    return rest == b"@" and raw[0] != 0x40 and raw[len(raw) - 1] != 0x40


def check_address_header(msg: _Message, key: bytes) -> None:
    """:meth:`_Message.check_from_to` for one of them: ``key`` is ``b"from"`` or ``b"to"``."""
    bit = _FROM_CHECKED if key == b"from" else _TO_CHECKED
    if msg._checked & bit:
        return
    if (msg._from if bit == _FROM_CHECKED else msg._to) is None and not plain_address_ok(
        _single(msg, key, True) or b""
    ):
        _ = msg.from_ if bit == _FROM_CHECKED else msg.to
    msg._checked |= bit


def _single(msg: _Message, key: bytes, required: bool) -> bytes | None:
    count, value = msg.headers.single(key)
    if count > 1:
        raise ParseError(f"more than one {display_name(key)} header", header=_s(key))
    if value is None and required:
        raise ParseError(f"missing {display_name(key)} header", header=_s(key))
    return value


def _typed(msg: _Message, key: bytes, parser: Callable[[bytes], T]) -> T | None:
    """Parse the single ``key`` header with ``parser``, naming it in errors."""
    value = _single(msg, key, required=False)
    return None if value is None else _wrap(key, parser, value)


def _each(msg: _Message, key: bytes, parser: Callable[[bytes], Iterable[T]]) -> tuple[T, ...]:
    """Parse every line of ``key`` with a list parser and join the results."""
    count, value = msg.headers.single(key)
    if count == 1:
        assert value is not None
        return tuple(_wrap(key, parser, value))
    out: list[T] = []
    if count:
        for v in msg.headers._values(key):
            out.extend(_wrap(key, parser, v))
    return tuple(out)


def _per_line(msg: _Message, key: bytes, parser: Callable[[bytes], T]) -> tuple[T, ...]:
    count, value = msg.headers.single(key)
    if count == 1:
        assert value is not None
        return (_wrap(key, parser, value),)
    if not count:
        return ()
    return tuple([_wrap(key, parser, v) for v in msg.headers._values(key)])


def _vias(msg: _Message) -> tuple[Via, ...]:
    """``_each(msg, b"via", parse_via_list)``, with the one-line case called directly."""
    count, value = msg.headers.single(b"via")
    if count != 1 or value is None:
        return _each(msg, b"via", parse_via_list)
    try:
        return parse_via_list(value)
    except ParseError as exc:
        raise _renamed(b"via", exc) from exc


def _contacts(msg: _Message) -> tuple[Address, ...] | Star:
    parsed = _per_line(msg, b"contact", parse_contact_list)
    if len(parsed) == 1 and type(parsed[0]) is tuple:
        return parsed[0]  # one Contact line, no "*": the usual case
    stars = [p for p in parsed if isinstance(p, Star)]
    if not stars:
        return tuple(a for p in parsed if not isinstance(p, Star) for a in p)
    if len(parsed) > 1:
        # §10.2.2: "*" "MUST NOT be used unless ... it is the only Contact".
        raise ParseError("bad Contact header: * with other values", header="contact")
    return stars[0]


def _tokens(msg: _Message, key: bytes) -> tuple[bytes, ...]:
    # functools.partial, not a lambda (kept from when this was a method:
    # mypyc 2.4.1 fails on a closure in a method of a Python class).
    return _each(msg, key, functools.partial(parse_token_list, header=key.decode()))


def _quick_tag(value: bytes) -> tuple[bool, bytes | None]:
    if value.find(b'"') >= 0:
        # A quoted display name ("Bob" <sip:...>;tag=1) ends before the "<",
        # and a URI holds no '"' or '>', so the parameters follow the last
        # '>'; quick_param leaves any other quote to the real parser.
        gt = value.rfind(b">")
        if gt >= 0:
            value = value[gt + 1 :]
    return quick_param(value, b";tag=")


def _first_via(line: bytes) -> Via:
    """The first via-parm of one Via header line."""
    comma = line.find(b",")
    if comma > 0 and line[:comma].find(b'"') < 0:
        # No quote before the first comma, so it separates via-parms (Via has
        # no "<...>"; §7.3.1): cut there instead of scanning the whole line.
        first = line[:comma].strip(WS)
        if first:
            return parse_via(first)
    if comma >= 0:
        parts = split_comma(line)
        if not parts:
            raise ParseError("empty Via")
        line = parts[0]
    return parse_via(line)


def _s(key: bytes) -> str:
    return key.decode("ascii", "replace")


def _wrap(key: bytes, parser: Callable[[bytes], T], value: bytes) -> T:
    try:
        return parser(value)
    except ParseError as exc:
        raise _renamed(key, exc) from exc


def _renamed(key: bytes, exc: ParseError) -> ParseError:
    """``exc`` as the error of header ``key``: "bad <Header> header: <reason>", naming it."""
    label = f"bad {display_name(key)} header"
    reason = exc.reason if exc.reason.startswith(label) else f"{label}: {exc.reason}"
    return ParseError(reason, status_hint=exc.status_hint, header=_s(key))


def _max_forwards(value: bytes) -> int:
    # §20.22: "The Max-Forwards value is an integer in the range 0-255".
    return parse_uint(value, header="max-forwards", maximum=255)


def _expires(value: bytes) -> int:
    # §20.19: "delta-seconds ... a decimal integer number of seconds"; §25.1
    # caps delta-seconds at 2**32-1 in practice ("values above ... 2**32-1").
    return parse_uint(value, header="expires")

"""What requests and responses share: the header block and the typed accessors.

Private; :mod:`sipmsg.message` builds :class:`~sipmsg.message.Request` and
:class:`~sipmsg.message.Response` on :class:`_Message`. Each typed accessor
parses its header on first use and caches the result in an explicit slot.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable
from typing import Final, Self, TypeVar

from ._abnf import WORD, WS, split_comma
from ._errors import ParseError
from ._native import python_class
from .address import Address, Star, parse_address, parse_address_list, parse_contact_list
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

# callid = word [ "@" word ]  (§25.1)
_CALL_ID_RE: Final = re.compile(rb"\A" + WORD + rb"(?:@" + WORD + rb")?\Z")


class _Unset(enum.Enum):
    UNSET = 0


_UNSET: Final = _Unset.UNSET
T = TypeVar("T")


@python_class
class _Message:
    """What requests and responses share: headers, body, the typed accessors."""

    __slots__ = (
        "_allow",
        "_authorization",
        "_call_id",
        "_contact",
        "_content_length",
        "_content_type",
        "_cseq",
        "_data",
        "_expires",
        "_from",
        "_from_tag",
        "_max_forwards",
        "_path",
        "_proxy_authenticate",
        "_proxy_authorization",
        "_proxy_require",
        "_record_route",
        "_require",
        "_route",
        "_supported",
        "_to",
        "_to_tag",
        "_top_via",
        "_unsupported",
        "_user_agent",
        "_via",
        "_www_authenticate",
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

    def _init_cache(self, data: bytes | None) -> None:
        self._data = data
        self._content_length: int | None = None
        self._via: tuple[Via, ...] | None = None
        self._top_via: Via | None = None
        self._call_id: bytes | None = None
        self._cseq: CSeq | None = None
        self._from: Address | None = None
        self._to: Address | None = None
        self._from_tag: bytes | _Unset | None = _UNSET
        self._to_tag: bytes | _Unset | None = _UNSET
        self._contact: tuple[Address, ...] | Star | None = None
        self._route: tuple[Address, ...] | None = None
        self._record_route: tuple[Address, ...] | None = None
        self._path: tuple[Address, ...] | None = None
        self._max_forwards: int | _Unset | None = _UNSET
        self._expires: int | _Unset | None = _UNSET
        self._content_type: MediaType | _Unset | None = _UNSET
        self._user_agent: bytes | _Unset | None = _UNSET
        self._allow: tuple[bytes, ...] | None = None
        self._supported: tuple[bytes, ...] | None = None
        self._require: tuple[bytes, ...] | None = None
        self._proxy_require: tuple[bytes, ...] | None = None
        self._unsupported: tuple[bytes, ...] | None = None
        self._www_authenticate: tuple[Challenge, ...] | None = None
        self._proxy_authenticate: tuple[Challenge, ...] | None = None
        self._authorization: tuple[Credentials, ...] | None = None
        self._proxy_authorization: tuple[Credentials, ...] | None = None

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

    def _copy_start(self, other: Self) -> None:
        raise NotImplementedError

    def _with(self, headers: Headers, body: bytes) -> Self:
        new = object.__new__(type(self))
        new._copy_start(self)
        new.version = self.version
        new.headers = headers
        new.body = body
        new._init_cache(None)
        return new

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

    def _single(self, key: bytes, required: bool) -> bytes | None:
        count, value = self.headers.single(key)
        if count > 1:
            raise ParseError(f"more than one {display_name(key)} header", header=_s(key))
        if value is None and required:
            raise ParseError(f"missing {display_name(key)} header", header=_s(key))
        return value

    def _typed(self, key: bytes, parser: Callable[[bytes], T]) -> T | None:
        """Parse the single ``key`` header with ``parser``, naming it in errors."""
        value = self._single(key, required=False)
        return None if value is None else _wrap(key, parser, value)

    def _each(self, key: bytes, parser: Callable[[bytes], Iterable[T]]) -> tuple[T, ...]:
        """Parse every line of ``key`` with a list parser and join the results."""
        count, value = self.headers.single(key)
        if count == 1:
            assert value is not None
            return tuple(_wrap(key, parser, value))
        out: list[T] = []
        if count:
            for f in self.headers:
                if f[1] == key:
                    out.extend(_wrap(key, parser, f[2]))
        return tuple(out)

    def _per_line(self, key: bytes, parser: Callable[[bytes], T]) -> tuple[T, ...]:
        count, value = self.headers.single(key)
        if count == 1:
            assert value is not None
            return (_wrap(key, parser, value),)
        if not count:
            return ()
        return tuple([_wrap(key, parser, f[2]) for f in self.headers if f[1] == key])

    @property
    def via(self) -> tuple[Via, ...]:
        """Every Via value, top first (empty when there is none)."""
        v = self._via
        if v is None:
            v = self._via = self._each(b"via", parse_via_list)
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
            top = self._top_via = _wrap(b"via", _first_via, line)
        return top

    @property
    def call_id(self) -> bytes:
        """The Call-ID. Raises ParseError when missing, repeated or malformed."""
        v = self._call_id
        if v is None:
            raw = self._single(b"call-id", required=True)
            assert raw is not None
            if _CALL_ID_RE.match(raw) is None:
                raise ParseError("bad Call-ID header", header="call-id")
            v = self._call_id = raw
        return v

    @property
    def cseq(self) -> CSeq:
        """The CSeq. Raises ParseError when missing, repeated or malformed."""
        v = self._cseq
        if v is None:
            raw = self._single(b"cseq", required=True)
            assert raw is not None
            v = self._cseq = parse_cseq(raw)
        return v

    @property
    def from_(self) -> Address:
        """The From address. Raises ParseError when missing, repeated or malformed."""
        v = self._from
        if v is None:
            raw = self._single(b"from", required=True)
            assert raw is not None
            v = self._from = _wrap(b"from", parse_address, raw)
        return v

    @property
    def to(self) -> Address:
        """The To address. Raises ParseError when missing, repeated or malformed."""
        v = self._to
        if v is None:
            raw = self._single(b"to", required=True)
            assert raw is not None
            v = self._to = _wrap(b"to", parse_address, raw)
        return v

    # -- classifying fast paths ---------------------------------------------

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
                ok, v = _quick_tag(self._single(b"from", required=True) or b"")
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
                ok, v = _quick_tag(self._single(b"to", required=True) or b"")
            if not ok:
                v = self.to.tag
            self._to_tag = v
        return v

    @property
    def contact(self) -> tuple[Address, ...] | Star:
        """Every Contact value, or :class:`Star` for ``Contact: *`` (§10.2.2)."""
        v = self._contact
        if v is None:
            v = self._contact = self._contacts()
        return v

    def _contacts(self) -> tuple[Address, ...] | Star:
        parsed = self._per_line(b"contact", parse_contact_list)
        if len(parsed) == 1 and type(parsed[0]) is tuple:
            return parsed[0]  # one Contact line, no "*": the usual case
        stars = [p for p in parsed if isinstance(p, Star)]
        if not stars:
            return tuple(a for p in parsed if not isinstance(p, Star) for a in p)
        if len(parsed) > 1:
            # §10.2.2: "*" "MUST NOT be used unless ... it is the only Contact".
            raise ParseError("bad Contact header: * with other values", header="contact")
        return stars[0]

    @property
    def route(self) -> tuple[Address, ...]:
        """Every Route value, in order."""
        v = self._route
        if v is None:
            v = self._route = self._each(b"route", parse_address_list)
        return v

    @property
    def record_route(self) -> tuple[Address, ...]:
        """Every Record-Route value, in order."""
        v = self._record_route
        if v is None:
            v = self._record_route = self._each(b"record-route", parse_address_list)
        return v

    @property
    def path(self) -> tuple[Address, ...]:
        """Every Path value (RFC 3327), in order."""
        v = self._path
        if v is None:
            v = self._path = self._each(b"path", parse_address_list)
        return v

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, 0-255 (§20.22), or None when absent."""
        v = self._max_forwards
        if v is _UNSET:
            v = self._max_forwards = self._typed(b"max-forwards", _max_forwards)
        return v

    @property
    def expires(self) -> int | None:
        """Expires in seconds (§20.19), or None when absent."""
        v = self._expires
        if v is _UNSET:
            v = self._expires = self._typed(b"expires", _expires)
        return v

    @property
    def content_length(self) -> int:
        """Content-Length, or the body's length when the header is absent."""
        v = self._content_length
        if v is None:
            raw = self._single(b"content-length", required=False)
            v = len(self.body) if raw is None else parse_uint(raw, header="content-length")
            self._content_length = v
        return v

    @property
    def content_type(self) -> MediaType | None:
        """Content-Type, or None when absent."""
        v = self._content_type
        if v is _UNSET:
            v = self._content_type = self._typed(b"content-type", parse_media_type)
        return v

    @property
    def user_agent(self) -> bytes | None:
        """The raw User-Agent value, or None."""
        v = self._user_agent
        if v is _UNSET:
            v = self._user_agent = self.headers.get(b"user-agent")
        return v

    @property
    def allow(self) -> tuple[bytes, ...]:
        """The methods in Allow."""
        v = self._allow
        if v is None:
            v = self._allow = self._tokens(b"allow")
        return v

    @property
    def supported(self) -> tuple[bytes, ...]:
        """The option-tags in Supported."""
        v = self._supported
        if v is None:
            v = self._supported = self._tokens(b"supported")
        return v

    @property
    def require(self) -> tuple[bytes, ...]:
        """The option-tags in Require (answer 420 for the ones you lack, §8.2.2.3)."""
        v = self._require
        if v is None:
            v = self._require = self._tokens(b"require")
        return v

    @property
    def proxy_require(self) -> tuple[bytes, ...]:
        """The option-tags in Proxy-Require."""
        v = self._proxy_require
        if v is None:
            v = self._proxy_require = self._tokens(b"proxy-require")
        return v

    @property
    def unsupported(self) -> tuple[bytes, ...]:
        """The option-tags in Unsupported."""
        v = self._unsupported
        if v is None:
            v = self._unsupported = self._tokens(b"unsupported")
        return v

    def _tokens(self, key: bytes) -> tuple[bytes, ...]:
        # functools.partial, not a lambda: mypyc 2.4.1 fails on a closure in a
        # method of a Python (non-native) class.
        return self._each(key, functools.partial(parse_token_list, header=key.decode()))

    @property
    def www_authenticate(self) -> tuple[Challenge, ...]:
        """Every WWW-Authenticate challenge, one per header line."""
        v = self._www_authenticate
        if v is None:
            v = self._www_authenticate = self._per_line(b"www-authenticate", parse_challenge)
        return v

    @property
    def proxy_authenticate(self) -> tuple[Challenge, ...]:
        """Every Proxy-Authenticate challenge, one per header line."""
        v = self._proxy_authenticate
        if v is None:
            v = self._proxy_authenticate = self._per_line(b"proxy-authenticate", parse_challenge)
        return v

    @property
    def authorization(self) -> tuple[Credentials, ...]:
        """Every Authorization credential, one per header line."""
        v = self._authorization
        if v is None:
            v = self._authorization = self._per_line(b"authorization", parse_credentials)
        return v

    @property
    def proxy_authorization(self) -> tuple[Credentials, ...]:
        """Every Proxy-Authorization credential, one per header line."""
        v = self._proxy_authorization
        if v is None:
            v = self._proxy_authorization = self._per_line(
                b"proxy-authorization", parse_credentials
            )
        return v


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
        label = f"bad {display_name(key)} header"
        reason = exc.reason if exc.reason.startswith(label) else f"{label}: {exc.reason}"
        raise ParseError(reason, status_hint=exc.status_hint, header=_s(key)) from exc


def _max_forwards(value: bytes) -> int:
    # §20.22: "The Max-Forwards value is an integer in the range 0-255".
    return parse_uint(value, header="max-forwards", maximum=255)


def _expires(value: bytes) -> int:
    # §20.19: "delta-seconds ... a decimal integer number of seconds"; §25.1
    # caps delta-seconds at 2**32-1 in practice ("values above ... 2**32-1").
    return parse_uint(value, header="expires")

"""The media service's settings (section ``media``), from YAML and the environment.

::

    media:
      instances:
        - {name: rtp1, host: 10.0.0.5, port: 22222, weight: 2}
        - rtp2=10.0.0.6:22222          # the short form: [name=]host:port[/weight]
      timeout: 0.5
      default_flags: [replace-origin, replace-session-connection, ICE=remove]

``SIPMESH_MEDIA_INSTANCES=rtp1=10.0.0.5:22222/2,rtp2=10.0.0.6:22222`` sets the
list from the environment (short forms, comma-separated). ``local_rtpengine``
makes the service start its own RTPEngine child (``sipmesh up``), named
``local`` in the pool.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, TypeAlias

import msgspec
from msgspec import Meta

from sipmesh_bus.config import PositiveFloat, ServiceConfig, Settings

from .pool import HealthPolicy, Instance

__all__ = ["InstanceSettings", "MediaConfig", "MediaSettings", "parse_instance"]

_Port: TypeAlias = Annotated[int, Meta(ge=1, le=65535)]
_PortOrAny: TypeAlias = Annotated[int, Meta(ge=0, le=65535)]
_Count: TypeAlias = Annotated[int, Meta(ge=1)]
_SHORT: Final = re.compile(
    r"(?:(?P<name>[A-Za-z0-9_\-]+)=)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-]+):(?P<port>\d{1,5})"
    r"(?:/(?P<weight>\d{1,4}))?"
)


class InstanceSettings(Settings, frozen=True, kw_only=True):
    """One RTPEngine instance."""

    name: str
    host: str = "127.0.0.1"
    port: _Port
    #: Its ``--listen-ng`` UDP port.
    weight: Annotated[int, Meta(ge=0)] = 1
    #: Share of new calls; 0 drains it (no new calls, existing ones still served).


class MediaSettings(Settings, frozen=True, kw_only=True):
    """Section ``media``."""

    instances: list[InstanceSettings | str] = msgspec.field(default_factory=list)
    #: Structs, or short forms ``[name=]host:port[/weight]``.
    timeout: PositiveFloat = 0.5
    #: Seconds to wait for an ng reply, per try.
    tries: _Count = 3
    ping_interval: PositiveFloat = 1.0
    down_after: _Count = 2
    #: Failed pings in a row before an instance is marked down.
    up_after: _Count = 2
    #: Good pings in a row before it is marked up again.
    default_flags: list[str] = msgspec.field(default_factory=list)
    #: Flag words applied before each request's own (see ``ng.apply_flags``);
    #: on top of replace-origin, replace-session-connection and ICE=remove.
    delete_delay: Annotated[int, Meta(ge=0)] | None = None
    #: Seconds RTPEngine keeps a deleted call; None: the instance's setting.
    offer_failover: bool = True
    #: A new call's offer that times out is tried once on the next healthy instance.
    local_rtpengine: bool = False
    #: Start an RTPEngine child process (when the binary is installed).
    local_binary: str | None = None
    #: Its path; None searches ``$PATH`` and /usr/bin, /usr/sbin.
    local_interface: str = "127.0.0.1"
    #: The address it puts in SDP and relays media on.
    local_port_min: _PortOrAny = 0
    local_port_max: _PortOrAny = 0
    #: Its RTP port range; 0/0 picks 200 free ports.
    data_dir: str | None = None
    #: Where the child's pidfile and log go; None: a temporary directory.

    def health_policy(self) -> HealthPolicy:
        """The ping thresholds."""
        return HealthPolicy(down_after=self.down_after, up_after=self.up_after)

    def pool_instances(self) -> list[Instance]:
        """The configured instances (short forms parsed).

        Raises:
            ValueError: a short form does not parse, or two instances share a name.
        """
        out = [
            parse_instance(i)
            if isinstance(i, str)
            else Instance(name=i.name, host=i.host, port=i.port, weight=i.weight)
            for i in self.instances
        ]
        names = [i.name for i in out]
        if len(set(names)) != len(names):
            raise ValueError("media.instances: two instances share a name")
        return out


class MediaConfig(ServiceConfig, frozen=True, kw_only=True):
    """The media service's whole configuration."""

    media: MediaSettings = MediaSettings()


def parse_instance(text: str) -> Instance:
    """Parse ``[name=]host:port[/weight]``; the name defaults to ``host:port``.

    Raises:
        ValueError: it does not parse, or the port is out of range.
    """
    m = _SHORT.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"media.instances: {text!r} is not [name=]host:port[/weight]")
    host = m["host"].strip("[]")
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"media.instances: port out of range in {text!r}")
    name = m["name"] or f"{host}-{port}".replace(".", "_").replace(":", "_")
    weight = int(m["weight"]) if m["weight"] is not None else 1
    return Instance(name=name, host=host, port=port, weight=weight)

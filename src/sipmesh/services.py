"""The services ``sipmesh up`` starts, and ``sipmesh <name>`` runs, in one table.

Each service is a module with a ``__main__`` (``python -m sipmesh_<name>``). To add
one, append a :class:`ServiceSpec`; ``env`` maps the ``up`` options to the
service's ``SIPMESH_<SECTION>_<KEY>`` settings (see ``sipmesh_bus.config``), and
``config`` to a settings file for what environment variables cannot express
(lists of mappings, nested sections): ``up`` writes it to ``DATA_DIR/<name>.yaml``
and points ``SIPMESH_CONFIG`` at it. Until its module has a ``__main__``, ``up``
reports it as "not there yet".

The edge's port plan (``sipmesh up``): UDP and TCP on ``--sip-port``, TLS on
``--tls-port`` (default ``--sip-port`` + 1, the 5060/5061 pair of RFC 3261 §26.2
"SIP ... port 5060 ... SIPS ... port 5061"), WebSocket on ``--ws-port`` (default
``--sip-port`` + 2); 0 turns a transport off. With ``--edges N`` above 1, N
edge processes share those ports (``reuse_port``, SO_REUSEPORT): the kernel
spreads phones over them, one edge per core.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["SERVICES", "ServiceSpec", "UpOptions", "edge_ids", "find_service"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpOptions:
    """What ``sipmesh up`` was asked for, as the services need it."""

    sip_host: str
    sip_port: int
    domain: str
    data_dir: Path
    nats_url: str
    tls_port: int = 0
    #: 0: no TLS listener.
    ws_port: int = 0
    #: 0: no WebSocket listener.
    cert_file: Path | None = None
    key_file: Path | None = None
    #: The TLS certificate and key (self-signed into DATA_DIR/tls unless given).
    edges: int = 1
    #: Edge processes sharing the SIP ports.


def _no_env(_opts: UpOptions) -> Mapping[str, str]:
    return {}


def _no_config(_opts: UpOptions, _index: int) -> Mapping[str, Any]:
    return {}


def _one(_opts: UpOptions) -> int:
    return 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    """One service: its name on the command line and its module."""

    name: str
    #: ``sipmesh <name>`` and the label in ``up``'s output.
    module: str
    #: Run as ``python -m <module>``.
    help: str
    env: Callable[[UpOptions], Mapping[str, str]] = field(default=_no_env)
    #: Extra environment for the process, from the ``up`` options.
    config: Callable[[UpOptions, int], Mapping[str, Any]] = field(default=_no_config)
    #: Settings of replica N written to ``DATA_DIR/<name>.yaml`` (``<name>-N.yaml``
    #: when there are several; ``SIPMESH_CONFIG``); {} writes none.
    replicas: Callable[[UpOptions], int] = field(default=_one)
    #: How many processes ``up`` starts.

    def is_available(self) -> bool:
        """True when ``python -m <module>`` would run (the module has a ``__main__``)."""
        try:
            return importlib.util.find_spec(f"{self.module}.__main__") is not None
        except ModuleNotFoundError:
            return False


def edge_ids(opts: UpOptions) -> list[str]:
    """The ids of ``up``'s edges: the same after a restart (bindings name their edge).

    Unique per machine and data directory, so that two ``up`` sharing one NATS
    (``--nats-url``) do not answer each other's ``sip.edge.<id>.send``.
    """
    where = f"{socket.gethostname()}:{opts.data_dir.resolve()}".encode()
    token = hashlib.sha256(where).hexdigest()[:8]
    return [f"edge-{token}-{i}" for i in range(opts.edges)]


def _edges(opts: UpOptions) -> int:
    return opts.edges


def _edge_config(opts: UpOptions, index: int) -> Mapping[str, Any]:
    # sipmesh_edge.app.EdgeConfig: ``udp`` listen addresses, ``streams`` as
    # sipmesh_edge.streams.StreamConfig, ``advertised_hosts`` (OPTIONS to self).
    host = f"[{opts.sip_host}]" if ":" in opts.sip_host else opts.sip_host
    streams: dict[str, Any] = {"tcp": [f"{host}:{opts.sip_port}"]}
    if opts.tls_port:
        streams["tls"] = [f"{host}:{opts.tls_port}"]
        streams["cert_file"] = str(opts.cert_file)
        streams["key_file"] = str(opts.key_file)
    if opts.ws_port:
        streams["ws"] = [f"{host}:{opts.ws_port}"]
    ids = edge_ids(opts)
    config: dict[str, Any] = {
        "edge_id": ids[index],
        # The registrars' 401 answered at the edge (sipmesh_edge.challenge): the
        # same SIPMESH_REGISTRAR_* settings as the registrar (env below) and the
        # nonce secret file in the data directory they share.
        "challenge_registers": True,
        "udp": [f"{host}:{opts.sip_port}"],
        "streams": streams,
        "advertised_hosts": [opts.domain],
    }
    if opts.edges > 1:
        config["reuse_port"] = True
        config["siblings"] = [i for i in ids if i != ids[index]]
    return config


# Digest algorithms `up` offers: MD5 alone. The services' own default is
# SHA-256 then MD5 (RFC 8760), but the softphones people try first do not cope:
# SIPp 3.6 and baresip 1.0 (Debian 12) abort on a SHA-256 challenge instead of
# moving on to the MD5 one. SIPMESH_REGISTRAR_ALGORITHMS and
# SIPMESH_ROUTER_ALGORITHMS in up's own environment win over this.
UP_DIGEST_ALGORITHMS: Final = "MD5"


def _digest_env(section: str, opts: UpOptions) -> dict[str, str]:
    env = {f"SIPMESH_{section}_DOMAIN": opts.domain}
    key = f"SIPMESH_{section}_ALGORITHMS"
    env[key] = os.environ.get(key, UP_DIGEST_ALGORITHMS)
    return env


def _registrar_env(opts: UpOptions) -> Mapping[str, str]:
    return _digest_env("REGISTRAR", opts)


def _router_env(opts: UpOptions) -> Mapping[str, str]:
    env = _digest_env("ROUTER", opts)
    # Anchor every call: on one host (or one LAN) nothing looks NATed, and a
    # platform started to try sipmesh should show media going through RTPEngine.
    env["SIPMESH_ROUTER_MEDIA"] = os.environ.get("SIPMESH_ROUTER_MEDIA", "always")
    return env


def _media_env(opts: UpOptions) -> Mapping[str, str]:
    # The media service starts its own userspace rtpengine on free ports, with
    # its pidfile and log under DATA_DIR/media, or says once that it runs
    # without anchoring when the binary is absent.
    return {
        "SIPMESH_MEDIA_LOCAL_RTPENGINE": "true",
        "SIPMESH_MEDIA_DATA_DIR": str(opts.data_dir / "media"),
        "SIPMESH_MEDIA_LOCAL_INTERFACE": opts.sip_host,
    }


# Order matters: up starts them in this order and stops them in reverse, so the
# edge (which takes traffic) comes last and goes first.
SERVICES: Final[tuple[ServiceSpec, ...]] = (
    ServiceSpec(
        name="registrar",
        module="sipmesh_registrar",
        help="REGISTER, digest auth, location bindings",
        env=_registrar_env,
    ),
    ServiceSpec(
        name="router",
        module="sipmesh_router",
        help="proxying, forking, dispatcher, LCR",
        env=_router_env,
    ),
    ServiceSpec(
        name="media",
        module="sipmesh_media",
        help="RTPEngine control (starts a local rtpengine when the binary is present)",
        env=_media_env,
    ),
    ServiceSpec(name="cdr", module="sipmesh_cdr", help="call events to CDR rows"),
    ServiceSpec(
        name="edge",
        module="sipmesh_edge",
        help="SIP sockets",
        env=_registrar_env,
        config=_edge_config,
        replicas=_edges,
    ),
)


def find_service(name: str) -> ServiceSpec | None:
    """The spec called ``name``, or None."""
    return next((s for s in SERVICES if s.name == name), None)

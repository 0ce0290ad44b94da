"""The services ``sipmesh up`` starts, and ``sipmesh <name>`` runs, in one table.

Each service is a module with a ``__main__`` (``python -m sipmesh_<name>``). To add
one, append a :class:`ServiceSpec`; ``env`` maps the ``up`` options to the
service's ``SIPMESH_<SECTION>_<KEY>`` settings (see ``sipmesh_bus.config``).
Until its module has a ``__main__``, ``up`` reports it as "not there yet".
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["SERVICES", "ServiceSpec", "UpOptions", "find_service"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UpOptions:
    """What ``sipmesh up`` was asked for, as the services need it."""

    sip_host: str
    sip_port: int
    domain: str
    data_dir: Path
    nats_url: str


def _no_env(_opts: UpOptions) -> Mapping[str, str]:
    return {}


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
    replicas: int = 1
    #: How many processes ``up`` starts.

    def is_available(self) -> bool:
        """True when ``python -m <module>`` would run (the module has a ``__main__``)."""
        try:
            return importlib.util.find_spec(f"{self.module}.__main__") is not None
        except ModuleNotFoundError:
            return False


def _edge_env(opts: UpOptions) -> Mapping[str, str]:
    # sipmesh_edge.app.EdgeConfig: root-level ``udp: list[str]`` of host:port.
    host = f"[{opts.sip_host}]" if ":" in opts.sip_host else opts.sip_host
    return {"SIPMESH_UDP": f"{host}:{opts.sip_port}"}


def _domain_env(section: str) -> Callable[[UpOptions], Mapping[str, str]]:
    def env(opts: UpOptions) -> Mapping[str, str]:
        return {f"SIPMESH_{section}_DOMAIN": opts.domain}

    return env


# Order matters: up starts them in this order and stops them in reverse, so the
# edge (which takes traffic) comes last and goes first.
SERVICES: Final[tuple[ServiceSpec, ...]] = (
    ServiceSpec(
        name="registrar",
        module="sipmesh_registrar",
        help="REGISTER, digest auth, location bindings",
        env=_domain_env("REGISTRAR"),
    ),
    ServiceSpec(
        name="router",
        module="sipmesh_router",
        help="proxying, forking, dispatcher, LCR",
        env=_domain_env("ROUTER"),
    ),
    ServiceSpec(name="media", module="sipmesh_media", help="RTPEngine control"),
    ServiceSpec(name="cdr", module="sipmesh_cdr", help="call events to CDR rows"),
    ServiceSpec(name="edge", module="sipmesh_edge", help="SIP sockets", env=_edge_env),
)


def find_service(name: str) -> ServiceSpec | None:
    """The spec called ``name``, or None."""
    return next((s for s in SERVICES if s.name == name), None)

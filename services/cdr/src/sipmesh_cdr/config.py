"""The CDR service's settings (section ``cdr``), loaded by ``sipmesh_bus.config``.

Environment: ``SIPMESH_CDR_<KEY>``, e.g. ``SIPMESH_CDR_STORE_URL=postgresql://cdr@db/cdr``,
``SIPMESH_CDR_API_PORT=8081``. Without ``store_url`` the rows go to
``<data_dir>/cdr.sqlite3`` (``$SIPMESH_DATA_DIR``, else ``./.sipmesh``).
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

from msgspec import Meta

from sipmesh_bus.config import PositiveFloat, ServiceConfig, Settings

from .core import Limits
from .store import default_store_url

__all__ = ["CdrConfig", "CdrSettings", "limits_of", "store_url_of"]

_Port: TypeAlias = Annotated[int, Meta(ge=0, le=65535)]
_Count: TypeAlias = Annotated[int, Meta(ge=1)]


class CdrSettings(Settings, frozen=True, kw_only=True):
    """Section ``cdr``."""

    store_url: str | None = None
    #: ``sqlite:///path`` or ``postgresql://...``; default: the data dir's SQLite file.
    api_host: str = "127.0.0.1"
    api_port: _Port = 0
    #: The ``/cdrs`` JSON endpoint (0 picks a free port, logged at start).
    batch: _Count = 256
    #: Events fetched and committed together.
    max_ack_pending: _Count = 4096
    #: Unacknowledged events the server hands this consumer at most.
    ack_wait: PositiveFloat = 30.0
    #: Seconds before an unacknowledged event is redelivered.
    max_call_duration: PositiveFloat = 86_400.0
    #: An answered call with no BYE is closed as ``timeout`` after this long.
    setup_timeout: PositiveFloat = 300.0
    #: An unanswered call with no final response is closed after this long.
    sweep_interval: PositiveFloat = 30.0
    #: Seconds between looks for calls to close.
    billing_first: _Count = 1
    billing_step: _Count = 1
    #: Increments when the route names none.


class CdrConfig(ServiceConfig, frozen=True, kw_only=True):
    """The CDR service's whole configuration."""

    cdr: CdrSettings = CdrSettings()
    data_dir: str | None = None
    #: ``$SIPMESH_DATA_DIR``: where the default SQLite file lives.


def store_url_of(config: CdrConfig) -> str:
    """The store URL: ``cdr.store_url``, else the data dir's SQLite file."""
    return config.cdr.store_url or default_store_url(config.data_dir or ".sipmesh")


def limits_of(settings: CdrSettings) -> Limits:
    """The core's :class:`~sipmesh_cdr.core.Limits` from the ``cdr`` section."""
    return Limits(
        max_call_duration=settings.max_call_duration,
        setup_timeout=settings.setup_timeout,
        billing_first=settings.billing_first,
        billing_step=settings.billing_step,
    )

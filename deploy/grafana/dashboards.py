"""sipmesh's Grafana dashboards as code, exported to ``deploy/grafana/<name>.json``.

Run ``python deploy/grafana/dashboards.py`` to write the JSON files and
``python deploy/grafana/dashboards.py --check`` (CI) to fail when a committed
file differs from what this module builds. The dashboards are built with the
grafana-foundation-sdk builders only, so the JSON always fits Grafana's model.

Every panel query is a :class:`Query` that says which traffic makes it return a
series (:class:`Traffic`): tests/observability evaluates every expression
against a real Prometheus scraping ``sipmesh up`` and holds each one to that.
Only metrics the services export today appear here; docs/metrics.md lists them,
and the metrics still missing.
"""

from __future__ import annotations

import argparse
import enum
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, ValueMap, ValueMappingResult

__all__ = [
    "DASHBOARDS",
    "OUT_DIR",
    "DashboardSpec",
    "PanelSpec",
    "Query",
    "Traffic",
    "build",
    "concrete",
    "main",
    "render",
]

OUT_DIR: Final = Path(__file__).resolve().parent
RATE: Final = "$__rate_interval"
#: Grafana's rate window; :func:`concrete` puts a fixed one in for promtool and tests.
_DATASOURCE: Final = DataSourceRef(type_val="prometheus", uid="${datasource}")
_JOBS: Final = 'job=~"sipmesh-.*"'
#: ``sipmesh up`` names its scrape jobs ``sipmesh-<service>``; so does the chart.
_RTPENGINE: Final = "rtpengine"
#: The media metrics' label for an RTPEngine instance (not ``instance``, which
#: Prometheus keeps for the scrape target).


class Traffic(enum.Enum):
    """What must have happened for a query to return at least one series."""

    IDLE = "idle"
    #: Nothing: the platform is up (gauges, counters without labels, ``up``).
    SIP = "sip"
    #: REGISTER with digest auth (also wrong passwords), an out-of-dialog MESSAGE,
    #: a stray response: what the observability e2e test sends.
    CALLS = "calls"
    #: INVITE dialogs routed by the router (call events, CDR events): the e2e test
    #: places calls through a dispatcher set to a SIPp UAS.
    ROUTING = "routing"
    #: Routing data in KV: the e2e test adds a dispatcher set and an LCR gateway.
    #: Their series (destination up, carrier attempts at 0) exist from then on.
    MEDIA = "media"
    #: An RTPEngine instance configured for the media service (health, ng pings).
    ANCHORED = "anchored"
    #: Calls whose media the router has the media service anchor (ng offer/answer).
    FAILURE = "failure"
    #: Only after something failed (a 503 for lack of a service, an ng error).


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    #: PromQL; may use ``$__rate_interval``.
    legend: str = ""
    #: Grafana legend format, e.g. ``{{method}}``.
    traffic: Traffic = Traffic.SIP


@dataclass(frozen=True, slots=True, kw_only=True)
class PanelSpec:
    """One panel: a time series (default) or a single stat."""

    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: Literal["timeseries", "stat"] = "timeseries"
    description: str = ""
    width: int = 12
    mappings: tuple[tuple[str, str, str], ...] = ()
    #: Value mappings (value, text, colour), e.g. ``("0", "down", "red")``; a stat
    #: panel with mappings colours its background.


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardSpec:
    """One dashboard: rows of panels, written to ``<name>.json``."""

    name: str
    uid: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[PanelSpec, ...]], ...]

    def queries(self) -> list[Query]:
        """Every query of every panel, in order."""
        return [q for _, panels in self.rows for p in panels for q in p.queries]


def concrete(expr: str, rate_interval: str = "1m") -> str:
    """``expr`` with Grafana's ``$__rate_interval`` replaced, as Prometheus takes it."""
    return expr.replace(RATE, rate_interval)


# -- query helpers ---------------------------------------------------------------


def _rate(metric: str, by: str = "", where: str = "") -> str:
    selector = f"{metric}{{{where}}}" if where else metric
    grouping = f"sum by ({by}) " if by else "sum "
    return f"{grouping}(rate({selector}[{RATE}]))"


def _quantiles(
    histogram: str,
    by: str = "",
    traffic: Traffic = Traffic.SIP,
    qs: tuple[float, ...] = (0.5, 0.95, 0.99),
) -> tuple[Query, ...]:
    keys = f"le, {by}" if by else "le"
    label = f"{{{{{by}}}}} " if by else ""
    return tuple(
        Query(
            expr=f"histogram_quantile({q}, sum by ({keys}) (rate({histogram}_bucket[{RATE}])))",
            legend=f"{label}p{round(q * 100)}",
            traffic=traffic,
        )
        for q in qs
    )


def _ts(
    title: str, *queries: Query, unit: str = "short", description: str = "", width: int = 12
) -> PanelSpec:
    return PanelSpec(title=title, queries=queries, unit=unit, description=description, width=width)


def _stat(title: str, query: Query, unit: str = "short", description: str = "") -> PanelSpec:
    return PanelSpec(
        title=title, queries=(query,), unit=unit, kind="stat", description=description, width=6
    )


_IDLE: Final = Traffic.IDLE
_CALLS: Final = Traffic.CALLS
_ROUTING: Final = Traffic.ROUTING
_MEDIA: Final = Traffic.MEDIA
_FAILURE: Final = Traffic.FAILURE

# -- router queries shared by the overview and the router dashboard ---------------

_DESTINATION_UP: Final = (
    "max by (set, destination, transport) (sipmesh_router_dispatcher_destination_up)"
)
#: Every router replica reports every destination: one series per destination.
_UP_DOWN: Final = (("1", "up", "green"), ("0", "down", "red"))
_CALLS_ACTIVE: Final = _stat(
    "Calls active",
    Query(expr="max(sipmesh_router_calls_active)", traffic=_IDLE),
    description="Answered calls not ended (every replica counts every call: max)",
)
_ASR: Final = _stat(
    "ASR",
    Query(
        expr=f"{_rate('sipmesh_router_call_answers_total')} / "
        f"{_rate('sipmesh_router_call_attempts_total')}",
        traffic=_IDLE,
    ),
    unit="percentunit",
    description="Calls answered over new calls (failover legs are not attempts)",
)
_DESTINATIONS_DOWN: Final = _stat(
    "Destinations down",
    Query(expr=f"count({_DESTINATION_UP} == 0) or vector(0)", traffic=_IDLE),
    description="Dispatcher destinations a fresh health probe says are down",
)

# -- the dashboards ----------------------------------------------------------------

OVERVIEW: Final = DashboardSpec(
    name="overview",
    uid="sipmesh-overview",
    title="sipmesh / Platform overview",
    description=(
        "Every service at a glance: targets, NATS, calls, SIP load, bus latency, resources."
    ),
    rows=(
        (
            "Health",
            (
                _stat(
                    "Targets up",
                    Query(expr=f"sum(up{{{_JOBS}}})", traffic=_IDLE),
                    description="Scrape targets answering /metrics",
                ),
                _stat(
                    "Targets down",
                    Query(expr=f"count(up{{{_JOBS}}} == 0) or vector(0)", traffic=_IDLE),
                ),
                _stat(
                    "NATS disconnected",
                    Query(expr="count(sipmesh_nats_connected == 0) or vector(0)", traffic=_IDLE),
                    description="Processes whose NATS connection is down",
                ),
                _stat(
                    "Registered AoRs",
                    Query(expr="max(sipmesh_registrar_aors)", traffic=_IDLE),
                ),
                _ts(
                    "Up by job",
                    Query(expr=f"sum by (job) (up{{{_JOBS}}})", legend="{{job}}", traffic=_IDLE),
                ),
                _ts(
                    "NATS reconnects",
                    Query(
                        expr=f"sum by (job) (increase(sipmesh_nats_reconnects_total[{RATE}]))",
                        legend="{{job}}",
                        traffic=_IDLE,
                    ),
                ),
            ),
        ),
        (
            "Calls",
            (
                _CALLS_ACTIVE,
                _ASR,
                _stat(
                    "Call attempts/s",
                    Query(expr=_rate("sipmesh_router_call_attempts_total"), traffic=_IDLE),
                    unit="ops",
                ),
                _DESTINATIONS_DOWN,
                _ts(
                    "Call attempts and answers",
                    Query(
                        expr=_rate("sipmesh_router_call_attempts_total"),
                        legend="attempts",
                        traffic=_IDLE,
                    ),
                    Query(
                        expr=_rate("sipmesh_router_call_answers_total"),
                        legend="answers",
                        traffic=_IDLE,
                    ),
                    unit="ops",
                ),
                _ts(
                    "Calls active",
                    Query(expr="max(sipmesh_router_calls_active)", legend="active", traffic=_IDLE),
                ),
            ),
        ),
        (
            "Traffic",
            (
                _ts(
                    "SIP requests by method",
                    Query(expr=_rate("sipmesh_edge_requests_total", "method"), legend="{{method}}"),
                    unit="reqps",
                ),
                _ts(
                    "SIP responses by class",
                    Query(
                        expr=_rate("sipmesh_edge_responses_sent_total", "status_class"),
                        legend="{{status_class}}",
                    ),
                    unit="reqps",
                ),
                _ts(
                    "Bus requests by subject and outcome",
                    Query(
                        expr=_rate("sipmesh_bus_requests_total", "subject, outcome"),
                        legend="{{subject}} {{outcome}}",
                    ),
                    unit="reqps",
                ),
                _ts(
                    "Bus handling time p95 by subject",
                    Query(
                        expr="histogram_quantile(0.95, sum by (le, subject) "
                        f"(rate(sipmesh_bus_request_duration_seconds_bucket[{RATE}])))",
                        legend="{{subject}}",
                    ),
                    unit="s",
                ),
                _ts(
                    "Call events by kind",
                    Query(
                        expr=_rate("sipmesh_router_call_events_total", "kind"),
                        legend="{{kind}}",
                        traffic=_IDLE,
                    ),
                    unit="ops",
                ),
                _ts(
                    "CDR rows written",
                    Query(expr=_rate("sipmesh_cdr_records_written_total"), traffic=_IDLE),
                    unit="ops",
                ),
            ),
        ),
        (
            "Resources",
            (
                _ts(
                    "CPU by job",
                    Query(
                        expr=f"sum by (job) (rate(process_cpu_seconds_total{{{_JOBS}}}[{RATE}]))",
                        legend="{{job}}",
                        traffic=_IDLE,
                    ),
                    unit="percentunit",
                ),
                _ts(
                    "Resident memory by job",
                    Query(
                        expr=f"sum by (job) (process_resident_memory_bytes{{{_JOBS}}})",
                        legend="{{job}}",
                        traffic=_IDLE,
                    ),
                    unit="bytes",
                ),
                _ts(
                    "Time paused by the garbage collector, by job",
                    Query(
                        expr="max by (job) "
                        f"(rate(sipmesh_gc_pause_seconds_sum{{{_JOBS}}}[{RATE}]))",
                        legend="{{job}}",
                        traffic=_IDLE,
                    ),
                    unit="percentunit",
                ),
                _ts(
                    "Longest garbage-collector pauses (p99), by job",
                    Query(
                        expr="histogram_quantile(0.99, max by (le, job) "
                        f"(rate(sipmesh_gc_pause_seconds_bucket{{{_JOBS}}}[{RATE}])))",
                        legend="{{job}}",
                        traffic=_IDLE,
                    ),
                    unit="s",
                ),
            ),
        ),
    ),
)

EDGE: Final = DashboardSpec(
    name="edge",
    uid="sipmesh-edge",
    title="sipmesh / Edge",
    description="SIP sockets: requests, responses, bus round trips, what was dropped and why.",
    rows=(
        (
            "Requests and responses",
            (
                _ts(
                    "Requests by method",
                    Query(expr=_rate("sipmesh_edge_requests_total", "method"), legend="{{method}}"),
                    unit="reqps",
                ),
                _ts(
                    "Responses by class",
                    Query(
                        expr=_rate("sipmesh_edge_responses_sent_total", "status_class"),
                        legend="{{status_class}}",
                    ),
                    unit="reqps",
                ),
                _ts(
                    "Bus round trip (request to reply)",
                    *_quantiles("sipmesh_edge_bus_round_trip_seconds"),
                    unit="s",
                ),
                _ts(
                    "Transaction time by kind (request to final response)",
                    *_quantiles("sipmesh_edge_transaction_seconds", "kind", qs=(0.5, 0.95)),
                    unit="s",
                    description=(
                        "Server transactions, request received to final response sent: local"
                        " (the edge answered), service (a service's response or the edge's 503),"
                        " proxied (a forwarded request: a proxied INVITE includes the callee's"
                        " ringing and answer time)"
                    ),
                ),
                _ts(
                    "Transaction time p95 by method",
                    *_quantiles("sipmesh_edge_transaction_seconds", "method", qs=(0.95,)),
                    unit="s",
                    description="An INVITE's time includes the callee's answer time",
                ),
                _ts(
                    "Retransmissions absorbed",
                    Query(expr=_rate("sipmesh_edge_retransmissions_absorbed_total"), traffic=_IDLE),
                    unit="reqps",
                    description="Requests matched to an existing server transaction",
                ),
            ),
        ),
        (
            "Errors",
            (
                _ts(
                    "Dropped by reason",
                    Query(expr=_rate("sipmesh_edge_dropped_total", "reason"), legend="{{reason}}"),
                    unit="ops",
                ),
                _ts(
                    "503 for lack of a service, by reason",
                    Query(
                        expr=_rate("sipmesh_edge_unavailable_total", "reason"),
                        legend="{{reason}}",
                        traffic=_FAILURE,
                    ),
                    unit="ops",
                ),
                _ts(
                    "Parse errors",
                    Query(expr=_rate("sipmesh_edge_parse_errors_total"), traffic=_IDLE),
                    unit="ops",
                ),
                _ts(
                    "Internal errors",
                    Query(expr=_rate("sipmesh_edge_internal_errors_total"), traffic=_IDLE),
                    unit="ops",
                    description="Unexpected exceptions (bugs; see the edge's log)",
                ),
            ),
        ),
        (
            "Protection",
            (
                _ts(
                    "Bans issued by reason",
                    Query(
                        expr=_rate("sipmesh_edge_bans_issued_total", "reason"),
                        legend="{{reason}}",
                        traffic=_IDLE,
                    ),
                    unit="ops",
                    description=(
                        "Bans the edges decided: rate (over the rate limit), scanner (a scanner's"
                        " User-Agent), auth_failures (too many failed authentications)"
                    ),
                ),
                _ts(
                    "Bans active",
                    Query(expr="max(sipmesh_edge_bans_active)", traffic=_IDLE),
                    description=(
                        "Bans in an edge's cache (its own and the bans bucket's); every edge"
                        " follows the same bucket: max"
                    ),
                ),
                _ts(
                    "Messages dropped by the protection, by reason",
                    Query(
                        expr=_rate("sipmesh_edge_protection_dropped_total", "reason"),
                        legend="{{reason}}",
                        traffic=_IDLE,
                    ),
                    unit="ops",
                    description="Dropped silently: deny_list, banned, rate, scanner",
                ),
                _ts(
                    "Ban publish errors",
                    Query(expr=_rate("sipmesh_edge_ban_publish_errors_total"), traffic=_IDLE),
                    unit="ops",
                    description="Failed writes of a ban to the bans bucket (retried every second)",
                ),
            ),
        ),
    ),
)

REGISTRAR: Final = DashboardSpec(
    name="registrar",
    uid="sipmesh-registrar",
    title="sipmesh / Registrar",
    description="REGISTER results, digest failures, handling time, the location bucket.",
    rows=(
        (
            "Registrations",
            (
                _stat("AoRs in location", Query(expr="max(sipmesh_registrar_aors)", traffic=_IDLE)),
                _stat(
                    "Bindings (live contacts)",
                    Query(expr="max(sipmesh_registrar_bindings)", traffic=_IDLE),
                    description="Registered contacts not expired, across every AoR",
                ),
                _stat(
                    "Subscribers cached",
                    Query(expr="max(sipmesh_registrar_subscribers)", traffic=_IDLE),
                ),
                _stat(
                    "Replicas",
                    Query(expr='count(up{job="sipmesh-registrar"} == 1)', traffic=_IDLE),
                ),
                _stat(
                    "KV conflicts (1h)",
                    Query(
                        expr="sum(increase(sipmesh_registrar_kv_conflicts_total[1h]))",
                        traffic=_IDLE,
                    ),
                ),
                _ts(
                    "REGISTER by result",
                    Query(
                        expr=_rate("sipmesh_registrar_registrations_total", "result"),
                        legend="{{result}}",
                    ),
                    unit="reqps",
                ),
                _ts(
                    "Authentication failures by reason",
                    Query(
                        expr=_rate("sipmesh_registrar_auth_failures_total", "reason"),
                        legend="{{reason}}",
                    ),
                    unit="reqps",
                ),
                _ts(
                    "Handling time (KV round trips included)",
                    *_quantiles("sipmesh_registrar_handling_seconds"),
                    unit="s",
                ),
                _ts(
                    "AoRs and bindings over time",
                    Query(expr="max(sipmesh_registrar_aors)", legend="AoRs", traffic=_IDLE),
                    Query(expr="max(sipmesh_registrar_bindings)", legend="bindings", traffic=_IDLE),
                ),
            ),
        ),
    ),
)

ROUTER: Final = DashboardSpec(
    name="router",
    uid="sipmesh-router",
    title="sipmesh / Router (dispatcher and LCR)",
    description=(
        "Routing decisions and handling time; calls: attempts, answers, ASR and setup time by"
        " route; dispatcher destinations, LCR carriers, media requests."
    ),
    rows=(
        (
            "Decisions",
            (
                _stat(
                    "Routing objects",
                    Query(expr="max(sipmesh_router_routing_objects)", traffic=_IDLE),
                    description="Dispatcher sets plus LCR gateways in the routing snapshot",
                ),
                _stat(
                    "Subscribers cached",
                    Query(expr="max(sipmesh_router_subscribers)", traffic=_IDLE),
                ),
                _stat(
                    "Replicas",
                    Query(expr='count(up{job="sipmesh-router"} == 1)', traffic=_IDLE),
                ),
                _DESTINATIONS_DOWN,
                _ts(
                    "Decisions by outcome",
                    Query(
                        expr=_rate("sipmesh_router_decisions_total", "outcome"),
                        legend="{{outcome}}",
                    ),
                    unit="ops",
                ),
                _ts(
                    "Handling time (KV reads, media requests, event publishes included)",
                    *_quantiles("sipmesh_router_handling_seconds"),
                    unit="s",
                ),
                _ts(
                    "Handling time p95 by method",
                    Query(
                        expr="histogram_quantile(0.95, sum by (le, method) "
                        f"(rate(sipmesh_router_handling_seconds_bucket[{RATE}])))",
                        legend="{{method}}",
                    ),
                    unit="s",
                    description="method is response for responses (sip.route.response)",
                ),
                _ts(
                    "Media requests by command and outcome",
                    Query(
                        expr=_rate("sipmesh_router_media_requests_total", "command, outcome"),
                        legend="{{command}} {{outcome}}",
                        # Each command's outcome="ok" series exists from start-up.
                        traffic=_IDLE,
                    ),
                    unit="ops",
                ),
            ),
        ),
        (
            "Calls",
            (
                _CALLS_ACTIVE,
                _ASR,
                _stat(
                    "Call attempts (1h)",
                    Query(
                        expr="sum(increase(sipmesh_router_call_attempts_total[1h]))",
                        traffic=_IDLE,
                    ),
                ),
                _stat(
                    "Calls answered (1h)",
                    Query(
                        expr="sum(increase(sipmesh_router_call_answers_total[1h]))",
                        traffic=_IDLE,
                    ),
                ),
                _ts(
                    "Call attempts and answers by route",
                    Query(
                        expr=_rate("sipmesh_router_call_attempts_total", "route"),
                        legend="{{route}} attempts",
                        traffic=_IDLE,
                    ),
                    Query(
                        expr=_rate("sipmesh_router_call_answers_total", "route"),
                        legend="{{route}} answers",
                        traffic=_IDLE,
                    ),
                    unit="ops",
                    description="Failovers to another leg are not new attempts",
                ),
                _ts(
                    "ASR by route",
                    Query(
                        expr=f"{_rate('sipmesh_router_call_answers_total', 'route')} / "
                        f"{_rate('sipmesh_router_call_attempts_total', 'route')}",
                        legend="{{route}}",
                        # Every route's series exist from start-up (0 / 0 shows as a gap).
                        traffic=_IDLE,
                    ),
                    unit="percentunit",
                ),
                _ts(
                    "Call setup time by route (INVITE to 2xx)",
                    *_quantiles(
                        "sipmesh_router_call_setup_seconds", "route", _IDLE, qs=(0.5, 0.95)
                    ),
                    unit="s",
                    description="By the edge's clock; ringing and failovers included",
                ),
                _ts(
                    "Calls active",
                    Query(expr="max(sipmesh_router_calls_active)", legend="active", traffic=_IDLE),
                    description="Every replica counts every replica's calls: max, not sum",
                ),
                _ts(
                    "Call events by kind and outcome",
                    Query(
                        expr=_rate("sipmesh_router_call_events_total", "kind, outcome"),
                        legend="{{kind}} {{outcome}}",
                        traffic=_IDLE,
                    ),
                    unit="ops",
                    description="outcome is the JetStream publish (ok, error)",
                ),
                _ts(
                    "Call event publish errors",
                    Query(
                        expr=_rate("sipmesh_router_call_events_total", "kind", 'outcome="error"'),
                        legend="{{kind}}",
                        # Every kind's outcome="error" series exists at 0 from start-up.
                        traffic=_IDLE,
                    ),
                    unit="ops",
                ),
            ),
        ),
        (
            "Dispatcher and LCR",
            (
                PanelSpec(
                    title="Dispatcher destinations",
                    queries=(
                        Query(
                            expr=_DESTINATION_UP,
                            legend="{{set}} {{destination}} {{transport}}",
                            traffic=_ROUTING,
                        ),
                    ),
                    kind="stat",
                    mappings=_UP_DOWN,
                    description="Up unless a fresh health probe says down (the dispatcher's rule)",
                ),
                _ts(
                    "Dispatcher destinations up by set",
                    Query(
                        expr=f"sum by (set) ({_DESTINATION_UP})",
                        legend="{{set}} up",
                        traffic=_ROUTING,
                    ),
                    Query(
                        expr=f"count by (set) ({_DESTINATION_UP} == 0)",
                        legend="{{set}} down",
                        # No series while every destination is up.
                        traffic=_FAILURE,
                    ),
                ),
                _ts(
                    "LCR carrier use (INVITEs to a gateway)",
                    Query(
                        expr=_rate("sipmesh_router_lcr_carrier_attempts_total", "carrier, gateway"),
                        legend="{{carrier}} {{gateway}}",
                        traffic=_ROUTING,
                    ),
                    unit="ops",
                    description="A call's first leg and each failover",
                ),
                _ts(
                    "LCR attempts by carrier (1h)",
                    Query(
                        expr="sum by (carrier) "
                        "(increase(sipmesh_router_lcr_carrier_attempts_total[1h]))",
                        legend="{{carrier}}",
                        traffic=_ROUTING,
                    ),
                ),
            ),
        ),
    ),
)

MEDIA: Final = DashboardSpec(
    name="media",
    uid="sipmesh-media",
    title="sipmesh / Media (RTPEngine)",
    description=(
        "RTPEngine health and sessions, ng commands and their round trips per instance, failures."
    ),
    rows=(
        (
            "RTPEngine",
            (
                _stat(
                    "Instances up",
                    Query(
                        expr=f"sum(max by ({_RTPENGINE}) (sipmesh_media_instance_up))",
                        traffic=_MEDIA,
                    ),
                ),
                _stat(
                    "Instances down",
                    Query(
                        expr=f"count(max by ({_RTPENGINE}) (sipmesh_media_instance_up) == 0)"
                        " or vector(0)",
                        traffic=_MEDIA,
                    ),
                ),
                _stat(
                    "Sessions active",
                    Query(
                        expr=f"sum(max by ({_RTPENGINE}) (sipmesh_media_sessions_active))",
                        traffic=_MEDIA,
                    ),
                    description="Sessions the RTPEngine instances run (their ng statistics).",
                ),
                _ts(
                    "Instance up",
                    Query(
                        expr=f"max by ({_RTPENGINE}) (sipmesh_media_instance_up)",
                        legend=f"{{{{{_RTPENGINE}}}}}",
                        traffic=_MEDIA,
                    ),
                ),
                _ts(
                    "Sessions active by instance",
                    Query(
                        expr=f"max by ({_RTPENGINE}) (sipmesh_media_sessions_active)",
                        legend=f"{{{{{_RTPENGINE}}}}}",
                        traffic=_MEDIA,
                    ),
                    description="Every media replica reads the same instance: max, not sum.",
                ),
                _ts(
                    "ng commands by command",
                    Query(
                        expr=_rate("sipmesh_media_commands_total", "command", 'outcome="ok"'),
                        legend="{{command}}",
                        traffic=_MEDIA,
                    ),
                    unit="ops",
                ),
                _ts(
                    "ng round trip p95 by instance",
                    Query(
                        expr=f"histogram_quantile(0.95, sum by (le, {_RTPENGINE}) "
                        f"(rate(sipmesh_media_ng_round_trip_seconds_bucket[{RATE}])))",
                        legend=f"{{{{{_RTPENGINE}}}}}",
                        traffic=_MEDIA,
                    ),
                    unit="s",
                ),
                _ts(
                    "Failures by command and outcome",
                    Query(
                        expr=_rate(
                            "sipmesh_media_commands_total", "command, outcome", 'outcome!="ok"'
                        )
                        + " > 0",
                        legend="{{command}} {{outcome}}",
                        traffic=_FAILURE,
                    ),
                    unit="ops",
                ),
            ),
        ),
    ),
)

CDR: Final = DashboardSpec(
    name="cdr",
    uid="sipmesh-cdr",
    title="sipmesh / CDR",
    description=(
        "The CDR consumer: lag on the CALLS stream (events and seconds), rows written, commits,"
        " dead letters."
    ),
    rows=(
        (
            "Consumer",
            (
                _stat(
                    "Consumer lag",
                    Query(expr="max(sipmesh_cdr_consumer_pending)", traffic=_IDLE),
                    description="Events in CALLS not yet delivered to the CDR consumer",
                ),
                _stat(
                    "Consumer lag (seconds)",
                    Query(expr="min(sipmesh_cdr_consumer_lag_seconds)", traffic=_IDLE),
                    unit="s",
                    description=(
                        "0 when caught up, else the age of the newest event processed (the"
                        " replica furthest along: min)"
                    ),
                ),
                _stat(
                    "Ack pending",
                    Query(expr="max(sipmesh_cdr_consumer_ack_pending)", traffic=_IDLE),
                ),
                _stat(
                    "Dead letters (1h)",
                    Query(expr="sum(increase(sipmesh_cdr_dead_letters_total[1h]))", traffic=_IDLE),
                ),
                _stat(
                    "Store conflicts (1h)",
                    Query(
                        expr="sum(increase(sipmesh_cdr_store_conflicts_total[1h]))", traffic=_IDLE
                    ),
                ),
                _ts(
                    "Lag over time",
                    Query(
                        expr="max(sipmesh_cdr_consumer_pending)", legend="pending", traffic=_IDLE
                    ),
                    Query(
                        expr="max(sipmesh_cdr_consumer_ack_pending)",
                        legend="ack pending",
                        traffic=_IDLE,
                    ),
                ),
                _ts(
                    "Lag in seconds",
                    Query(
                        expr="min(sipmesh_cdr_consumer_lag_seconds)",
                        legend="consumer",
                        traffic=_IDLE,
                    ),
                    Query(
                        expr="max(sipmesh_cdr_consumer_lag_seconds)",
                        legend="slowest replica",
                        traffic=_IDLE,
                    ),
                    unit="s",
                ),
                _ts(
                    "Events by outcome",
                    Query(
                        expr=_rate("sipmesh_cdr_events_total", "outcome"),
                        legend="{{outcome}}",
                        traffic=_CALLS,
                    ),
                    unit="ops",
                ),
                _ts(
                    "Rows written and calls closed by timeout",
                    Query(
                        expr=_rate("sipmesh_cdr_records_written_total"),
                        legend="rows",
                        traffic=_IDLE,
                    ),
                    Query(
                        expr=_rate("sipmesh_cdr_timeouts_total"), legend="timeouts", traffic=_IDLE
                    ),
                    unit="ops",
                ),
                _ts(
                    "Batch commit time",
                    *_quantiles("sipmesh_cdr_commit_seconds", traffic=_IDLE),
                    unit="s",
                ),
            ),
        ),
    ),
)

DASHBOARDS: Final[tuple[DashboardSpec, ...]] = (OVERVIEW, EDGE, REGISTRAR, ROUTER, MEDIA, CDR)


# -- building with the foundation SDK ------------------------------------------------


def _target(query: Query, ref: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref).range()
    if query.legend:
        target = target.legend_format(query.legend)
    return target


def _panel(spec: PanelSpec, panel_id: int) -> timeseries.Panel | stat.Panel:
    panel: timeseries.Panel | stat.Panel = (
        stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    )
    panel = panel.id(panel_id).title(spec.title).datasource(_DATASOURCE).unit(spec.unit)
    panel = panel.span(spec.width).height(4 if spec.kind == "stat" else 8)
    if spec.description:
        panel = panel.description(spec.description)
    if spec.mappings:
        options = {
            value: ValueMappingResult(text=text, color=colour, index=i)
            for i, (value, text, colour) in enumerate(spec.mappings)
        }
        panel = panel.mappings([ValueMap(options=options)])
        if isinstance(panel, stat.Panel):
            panel = panel.color_mode(BigValueColorMode.BACKGROUND)
    for i, query in enumerate(spec.queries):
        panel = panel.with_target(_target(query, chr(ord("A") + i)))
    return panel


def build(spec: DashboardSpec) -> dict[str, object]:
    """The Grafana dashboard JSON model of ``spec`` (plain data, ready for ``json.dumps``)."""
    board = (
        gd.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(["sipmesh"])
        .editable()
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(gd.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )
    ids = itertools.count(1)
    for title, panels in spec.rows:
        board = board.with_row(gd.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(_panel(panel, next(ids)))
    data: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return data


def render(spec: DashboardSpec) -> str:
    """The exported file's text: sorted keys, two-space indent, a final newline."""
    return json.dumps(build(spec), indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write every dashboard to ``OUT_DIR``, or with ``--check`` report stale files.

    Returns:
        0, or 1 when ``--check`` found a file missing or out of date.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a JSON file is stale")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where the JSON files go")
    args = parser.parse_args(argv)
    stale = []
    for spec in DASHBOARDS:
        path = args.out / f"{spec.name}.json"
        text = render(spec)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            f"stale: {', '.join(stale)}; run python deploy/grafana/dashboards.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

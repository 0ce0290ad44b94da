"""The router's Prometheus metrics, on an injected registry.

Everything the router counts about calls is derived here from what the core
decided (:class:`~sipmesh_router.model.Decision`: its outcome, call events and
setup time), so the core stays free of metrics. Labels with a known set of
values are created at start-up, so each series exists (at 0) before the first
call and a ``rate()`` over it is 0, not "no data". Label names follow
docs/metrics.md: ``outcome`` for what happened, ``route`` for how a call was
routed (``user``: a registered phone, ``dispatcher``: a dispatcher set,
``lcr``: a carrier's gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, Literal, TypeAlias

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sipmesh_bus.routing import Health, RoutingSnapshot, is_down
from sipmesh_bus.schema import CallEvent
from sipmesh_bus.tally import CounterChild, CounterFamily, HistogramChild, HistogramFamily

from .model import Decision

__all__ = [
    "EVENT_KINDS",
    "METHODS",
    "ROUTE_KINDS",
    "DestinationState",
    "DestinationsUp",
    "RouteKind",
    "RouterMetrics",
    "destination_states",
    "method_label",
    "route_of",
]

RouteKind: TypeAlias = Literal["user", "dispatcher", "lcr"]
ROUTE_KINDS: Final[tuple[RouteKind, ...]] = ("user", "dispatcher", "lcr")
EVENT_KINDS: Final = ("attempt", "ringing", "answered", "failed", "ended")
METHODS: Final = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "PRACK", "INFO",
    "MESSAGE", "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH", "OTHER", "response",
)  # fmt: skip
#: Values of the ``method`` label of ``sipmesh_router_handling_seconds``
#: (``response``: a response on ``sip.route.response``).
_DECISION_OUTCOMES: Final = (
    "forward", "in_dialog", "provisional", "answered", "failed", "final",
    "challenge", "bad_auth", "replay", "not_found", "forbidden", "unavailable", "error",
    "call_limit_user", "call_limit_trunk",
)  # fmt: skip
_MEDIA_COMMANDS: Final = ("offer", "answer", "delete")
_HANDLING_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_SETUP_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)
#: Seconds from INVITE to 2xx: a person picks up after seconds of ringing.


def route_of(event: CallEvent) -> RouteKind:
    """How the call of ``event`` was routed: a dispatcher set, LCR, or a registered user."""
    if event.dispatcher_set:
        return "dispatcher"
    if event.gateway or event.carrier:
        return "lcr"
    return "user"


def method_label(method: bytes | None) -> str:
    """The ``method`` label for a request's method (None: a response)."""
    if method is None:
        return "response"
    text = method.decode("latin-1")
    return text if text in METHODS else "OTHER"


class RouterMetrics:
    """Counters, gauges and histograms of one router replica."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._latency: dict[bytes | None, HistogramChild] = {}
        #: method (None: a response) -> the child of ``latency``.
        self.decisions = CounterFamily(
            "sipmesh_router_decisions",
            "Requests and responses decided, by outcome (forward, challenge, failover_500 ...)",
            ["outcome"],
            registry=registry,
        )
        self.events = CounterFamily(
            "sipmesh_router_call_events",
            "Call events published to JetStream, by kind and outcome of the publish (ok, error)",
            ["kind", "outcome"],
            registry=registry,
        )
        self.dialog_writes = CounterFamily(
            "sipmesh_router_dialog_writes",
            "Dialog record writes to KV dialogs (published after the reply), by op (put, "
            "delete) and outcome (ok, error: every retry failed)",
            ["op", "outcome"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "sipmesh_router_background_writes_pending",
            "Call events and dialog writes queued or in flight (published after the reply)",
            registry=registry,
        )
        self.latency = HistogramFamily(
            "sipmesh_router_handling_seconds",
            "Time to decide one message by method (response: a response), KV reads on a "
            "location cache miss and media requests included (event publishes are not: "
            "they are sent after the reply)",
            ["method"],
            registry=registry,
            buckets=_HANDLING_BUCKETS,
        )
        self.routing_keys = Gauge(
            "sipmesh_router_routing_objects",
            "Dispatcher sets plus gateways in this replica's routing snapshot",
            registry=registry,
        )
        self.subscribers = Gauge(
            "sipmesh_router_subscribers",
            "Subscribers in this replica's watched cache",
            registry=registry,
        )
        self.media = Counter(
            "sipmesh_router_media_requests",
            "Requests to the media service, by command (offer, answer, delete) and outcome "
            "(ok, or MediaReply.code: unavailable, timeout, instance_down, no_instance ...)",
            ["command", "outcome"],
            registry=registry,
        )
        self.calls_active = Gauge(
            "sipmesh_router_calls_active",
            "Answered calls not ended yet (KV dialogs, every replica's calls: use max)",
            registry=registry,
        )
        self.attempts = CounterFamily(
            "sipmesh_router_call_attempts",
            "New calls forwarded (initial INVITEs; failovers not counted), by route",
            ["route"],
            registry=registry,
        )
        self.answers = CounterFamily(
            "sipmesh_router_call_answers",
            "Calls answered (a 2xx to an initial INVITE), by route",
            ["route"],
            registry=registry,
        )
        self.setup = HistogramFamily(
            "sipmesh_router_call_setup_seconds",
            "INVITE received to 2xx received, by the edge's clock (ringing included), by route",
            ["route"],
            registry=registry,
            buckets=_SETUP_BUCKETS,
        )
        self.carrier_attempts = Counter(
            "sipmesh_router_lcr_carrier_attempts",
            "INVITEs sent to an LCR gateway (the first leg and each failover), by carrier, gateway",
            ["carrier", "gateway"],
            registry=registry,
        )
        self.call_limit_rejections = Counter(
            "sipmesh_router_call_limit_rejections",
            "New INVITEs refused by a concurrent-call cap, by kind (user: 403, trunk: 503)",
            ["kind"],
            registry=registry,
        )
        self._create_known_series()
        self._decisions: dict[str, CounterChild] = {}
        #: outcome -> the child of ``decisions`` (labels() per message is a
        #: tuple and a dict look-up more).
        self._per_route = {
            route: (
                self.attempts.labels(route),
                self.answers.labels(route),
                self.setup.labels(route),
            )
            for route in ROUTE_KINDS
        }
        #: route -> its children of ``attempts``, ``answers`` and ``setup``.

    def _create_known_series(self) -> None:
        for kind in EVENT_KINDS:
            for outcome in ("ok", "error"):
                self.events.labels(kind, outcome)
        for route in ROUTE_KINDS:
            self.attempts.labels(route)
            self.answers.labels(route)
            self.setup.labels(route)
        for method in METHODS:
            self.latency.labels(method)
        for outcome in _DECISION_OUTCOMES:
            self.decisions.labels(outcome)
        for command in _MEDIA_COMMANDS:
            self.media.labels(command, "ok")
        for kind in ("user", "trunk"):
            self.call_limit_rejections.labels(kind)
        for op in ("put", "delete"):
            for outcome in ("ok", "error"):
                self.dialog_writes.labels(op, outcome)

    def decided(self, decision: Decision, *, method: bytes | None, seconds: float) -> None:
        """Count one decision: its outcome, handling time and what it says about calls.

        Args:
            decision: what the router answered.
            method: the request's method, None for a response.
            seconds: the time taken to decide (and do the side effects).
        """
        outcome = decision.outcome
        counter = self._decisions.get(outcome)
        if counter is None:
            counter = self._decisions[outcome] = self.decisions.labels(outcome)
        counter.inc()
        if outcome.startswith("call_limit_"):
            self.call_limit_rejections.labels(outcome.removeprefix("call_limit_")).inc()
        latency = self._latency.get(method)
        if latency is None:
            latency = self._latency[method] = self.latency.labels(method_label(method))
        latency.observe(seconds)
        for event in decision.events:
            if event.kind == "attempt":
                if outcome == "forward":
                    self._per_route[route_of(event)][0].inc()
                if event.gateway or event.carrier:
                    self.carrier_attempts.labels(event.carrier or "", event.gateway or "").inc()
            elif event.kind == "answered":
                _, answers, setup = self._per_route[route_of(event)]
                answers.inc()
                if decision.setup_seconds is not None:
                    setup.observe(decision.setup_seconds)

    def known_gateways(self, snapshot: RoutingSnapshot) -> None:
        """Create the carrier-use series of every gateway in ``snapshot`` (at 0)."""
        for gateway in snapshot.gateways.values():
            self.carrier_attempts.labels(gateway.carrier, gateway.id)


DestinationState: TypeAlias = tuple[str, str, str, bool]
#: (set id, destination ``host:port``, transport, up).


def destination_states(
    snapshot: RoutingSnapshot, health: Mapping[str, Health], now: float
) -> list[DestinationState]:
    """Every dispatcher destination and whether the router would use it now.

    Up unless a fresh health record says down (:func:`sipmesh_bus.routing.is_down`,
    the rule the dispatcher applies), so a destination without probes is up.
    """
    states: dict[tuple[str, str, str], bool] = {}
    for set_id, ds in snapshot.sets.items():
        for dest in ds.destinations:
            host = f"[{dest.host}]" if ":" in dest.host else dest.host
            states[(set_id, f"{host}:{dest.port}", dest.transport)] = not is_down(
                health, dest.key, now
            )
    return [(s, d, t, up) for (s, d, t), up in sorted(states.items())]


class DestinationsUp(Collector):
    """``sipmesh_router_dispatcher_destination_up``, computed at each scrape.

    A collector rather than a Gauge: destinations come and go with the routing
    data, and a health record turns stale (and the destination up again) with
    time alone, without any event to update a gauge on.
    """

    def __init__(self, states: Callable[[], Iterable[DestinationState]]) -> None:
        self._states = states

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sipmesh_router_dispatcher_destination_up",
            "1 while a dispatcher destination takes calls (no fresh health record says down)",
            labels=["set", "destination", "transport"],
        )
        for set_id, dest, transport, up in self._states():
            family.add_metric([set_id, dest, transport], 1.0 if up else 0.0)
        yield family

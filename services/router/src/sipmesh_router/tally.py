"""Counters and histograms for the per-message metrics, without a lock per update.

A prometheus-client ``Counter.inc()`` takes a lock and goes through a value
object, and ``Histogram.observe()`` adds a bucket search in Python and a lock
per bucket: 0.4 and 1 µs, several per message. The router counts on the event
loop only, so these keep plain numbers in slotted children and build the
metric families only when the registry is collected (a ``/metrics`` scrape,
or ``get_sample_value`` in a test), as :mod:`sipmesh_bus.requeststats` does.

Same names and samples as prometheus-client's (``<name>_total``;
``_bucket``/``_count``/``_sum``), without the ``_created`` series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["CounterChild", "HistogramChild", "TallyCounter", "TallyHistogram"]

C = TypeVar("C", "CounterChild", "HistogramChild")

_le: Final = cast(Callable[[float], str], floatToGoString)
#: A bucket's ``le`` label as prometheus-client writes it (the function is untyped).


class CounterChild:
    """One labelled series of a :class:`TallyCounter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (never negative: a counter only grows)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class HistogramChild:
    """One labelled series of a :class:`TallyHistogram`."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        #: Per bucket, not cumulative; the last one is +Inf.
        self.total = 0.0

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose upper bound is >= it."""
        self.total += amount
        self.counts[bisect_left(self._bounds, amount)] += 1


class _Labelled(Collector, Generic[C]):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = list(labelnames)
        self._children: dict[tuple[str, ...], C] = {}

    def labels(self, *values: str) -> C:
        """The series of these label values (created, at zero, on first use)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name}: {len(self._labelnames)} label values expected")
            child = self._children[values] = self._new_child()
        return child

    def _new_child(self) -> C:
        raise NotImplementedError


class TallyCounter(_Labelled[CounterChild]):
    """A counter with labels, collected as ``<name>_total``.

    Args:
        name: without ``_total``.
        documentation: the HELP text.
        labelnames: the label names, in the order :meth:`labels` takes values.
        registry: where it is collected from.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        registry.register(self)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def collect(self) -> Iterator[Metric]:
        """The family as it is now (called by the registry)."""
        family = CounterMetricFamily(self._name, self._doc, labels=self._labelnames)
        for values, child in self._children.items():
            family.add_metric(list(values), child.value)
        yield family


class TallyHistogram(_Labelled[HistogramChild]):
    """A histogram with labels (``_bucket``, ``_count``, ``_sum``).

    Args:
        name: the family name.
        documentation: the HELP text.
        labelnames: the label names, in the order :meth:`labels` takes values.
        registry: where it is collected from.
        buckets: the upper bounds, increasing; +Inf is implied.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, documentation, labelnames)
        bounds = tuple(float(b) for b in buckets)
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must increase")
        self._bounds = bounds
        registry.register(self)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self._bounds)

    def collect(self) -> Iterator[Metric]:
        """The family as it is now (called by the registry)."""
        family = HistogramMetricFamily(self._name, self._doc, labels=self._labelnames)
        names = (*(_le(b) for b in self._bounds), "+Inf")
        for values, child in self._children.items():
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip(names, child.counts, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            family.add_metric(list(values), buckets, child.total)
        yield family

"""Counters and histograms for the per-message metrics, without a lock per update.

A prometheus-client ``Counter.inc()`` takes a lock and goes through a value
object, and ``Histogram.observe()`` adds a bucket search in Python and a lock
per bucket: 0.4 to 1 µs each, several per message. sipmesh services count on
their event loop only, the one thread that also serves ``/metrics``, so the
series here are plain numbers in slotted children, turned into metric families
only when the registry is collected (a scrape, or ``get_sample_value`` in a
test).

Each family is its own collector on the registry it is given. The exposition
is prometheus-client's for the same name, labels, help and buckets
(``<name>_total``; ``_bucket`` with the same ``le`` strings, ``_count``,
``_sum``), except that there are no ``_created`` samples. An unlabelled family
has its one series from the start, a labelled one gets a series (at zero) on
the first :meth:`~CounterFamily.labels` call for its values, as there.

Use::

    decisions = CounterFamily("x_decisions", "Decisions, by outcome", ["outcome"],
                              registry=registry)
    forward = decisions.labels("forward")   # keep the child on the hot path
    forward.inc()                           # one; forward.add(2.5) for other amounts
    latency = HistogramFamily("x_seconds", "Time to decide", [], registry=registry,
                              buckets=(0.001, 0.01, 0.1))
    latency.labels().observe(0.0004)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Generic, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["CounterChild", "CounterFamily", "HistogramChild", "HistogramFamily"]

C = TypeVar("C", "CounterChild", "HistogramChild")
M = TypeVar("M", CounterMetricFamily, HistogramMetricFamily)

_le: Final = cast(Callable[[float], str], floatToGoString)
#: A bucket's ``le`` label as prometheus-client's Histogram writes it (untyped there).


class CounterChild:
    """One series of a :class:`CounterFamily`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0
        #: The count so far.

    def inc(self) -> None:
        """Add one (the hot path: no argument to check, ~27 ns against ~37 ns with one)."""
        self.value += 1

    def add(self, amount: float) -> None:
        """Add ``amount`` (prometheus-client's ``inc(amount)``).

        Raises:
            ValueError: ``amount`` is negative (a counter only goes up).
        """
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class HistogramChild:
    """One series of a :class:`HistogramFamily`."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: The family's upper bounds, increasing, without +Inf.
        self.counts = [0] * (len(bounds) + 1)
        #: Per bucket, not cumulative; the last one is +Inf.
        self.sum = 0.0
        #: The sum of the amounts observed.

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose upper bound is >= it ("le")."""
        self.sum += amount
        self.counts[bisect_left(self.bounds, amount)] += 1


class _Family(Collector, Generic[C, M]):
    """The label handling and registration both families share."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        if not self.labelnames:
            self.labels()  # the one series exists from the start, as prometheus-client's does
        registry.register(self)

    def labels(self, *values: str) -> C:
        """The series of these label values (created, at zero, on first use).

        Raises:
            ValueError: not one value per label name.
        """
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected")
            child = self._children[values] = self._new_child()
        return child

    def describe(self) -> Iterator[Metric]:
        """The family without samples: the registry refuses a second one of the name."""
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        """The family as it is now (called by the registry)."""
        family = self._family()
        for values, child in self._children.items():
            self._add(family, list(values), child)
        yield family

    def _new_child(self) -> C:
        raise NotImplementedError

    def _family(self) -> M:
        raise NotImplementedError

    def _add(self, family: M, values: list[str], child: C) -> None:
        raise NotImplementedError


class CounterFamily(_Family[CounterChild, CounterMetricFamily]):
    """A counter with labels, exposed as ``<name>_total``.

    Args:
        name: with or without ``_total`` (CounterMetricFamily drops it, as ``Counter`` does).
        documentation: the HELP text.
        labelnames: the label names, in the order :meth:`labels` takes values.
        registry: where it is collected from.

    Raises:
        ValueError: the registry has a collector of that name already.
    """

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: CounterMetricFamily, values: list[str], child: CounterChild) -> None:
        family.add_metric(values, child.value)


class HistogramFamily(_Family[HistogramChild, HistogramMetricFamily]):
    """A histogram with labels (``_bucket``, ``_count``, ``_sum``).

    Args:
        name: the family name.
        documentation: the HELP text.
        labelnames: the label names, in the order :meth:`labels` takes values.
        registry: where it is collected from.
        buckets: the upper bounds, increasing; +Inf is implied (and may be given last).

    Raises:
        ValueError: the bounds do not increase, or the name is taken in the registry.
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
        bounds = tuple(float(b) for b in buckets)
        if bounds and bounds[-1] == float("inf"):
            bounds = bounds[:-1]
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must increase")
        self.bounds: Final = bounds
        self._les: Final = (*map(_le, bounds), "+Inf")
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: HistogramMetricFamily, values: list[str], child: HistogramChild) -> None:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for le, n in zip(self._les, child.counts, strict=True):
            cumulative += n
            buckets.append((le, cumulative))
        family.add_metric(values, buckets, child.sum)

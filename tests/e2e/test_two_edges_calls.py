# ruff: noqa: F811 - the fixtures imported from router_fixtures are parameters here
"""Calls through two edge processes sharing one SIP port (``reuse_port``), with a real router.

SIPp's caller opens a socket per call, so the kernel spreads the calls over
both edges; each edge names its own reply socket in the Via and Record-Route
it has the router write, so the callee's answers and the caller's ACK and BYE
come back to the edge that holds the call's transactions.
"""

from __future__ import annotations

import itertools
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.router_fixtures import (  # noqa: F401 - uas is a fixture
    EDGE_ID,
    RouterStack,
    Uas,
    router_stack,
    run_uac,
    uas,
)

pytestmark = pytest.mark.e2e

_numbers = itertools.count(1)
SECOND_EDGE = "e2e-edge-b"


@pytest.fixture(scope="module")
def two_edge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterStack]:
    """NATS, a registrar, a router and two edges on one SIP port."""
    with router_stack(tmp_path_factory.mktemp("two-edges"), (EDGE_ID, SECOND_EDGE)) as rs:
        yield rs


def _counter(http_port: int, name: str, labels: dict[str, str]) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_calls_spread_over_two_edges_and_each_call_stays_on_its_edge(
    two_edge_stack: RouterStack, uas: Callable[..., Uas], tmp_path: Path
) -> None:
    calls = 40
    phone = uas(calls=calls)
    user = f"twoedges{next(_numbers)}"
    two_edge_stack.bind(user, phone.port)  # registered through the first edge
    before = {
        port: {
            m: _counter(port, "sipmesh_edge_requests_total", {"method": m})
            for m in ("INVITE", "BYE")
        }
        for _, port in two_edge_stack.stack.edges
    }
    result = run_uac(two_edge_stack, tmp_path, user, calls=calls, rate=20.0, timeout=60.0)
    assert result.successful == calls, f"{result.describe()}\n{two_edge_stack.logs()}"
    assert len(phone.invites()) == calls
    invites = []
    for _, port in two_edge_stack.stack.edges:
        seen = {
            m: _counter(port, "sipmesh_edge_requests_total", {"method": m}) - before[port][m]
            for m in ("INVITE", "BYE")
        }
        # A call's INVITE, ACK and BYE all reached the same edge.
        assert seen["INVITE"] == seen["BYE"], seen
        invites.append(seen["INVITE"])
    # 40 sockets hashed over two: all on one edge has odds of 2**-39.
    assert all(invites), f"the kernel gave every call to one edge: {invites}"
    assert sum(invites) == calls

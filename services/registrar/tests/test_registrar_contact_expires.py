"""The 200's Contact ``expires`` parameter: the binding's remaining whole seconds."""

from __future__ import annotations

import pytest

from sipmesh_bus.records import Binding
from sipmesh_registrar.bindings import _contact_value

NOW = 1_700_000_000.0


def _binding(expires_at: float) -> Binding:
    return Binding(
        contact="sip:a@192.0.2.1",
        expires_at=expires_at,
        call_id="c",
        cseq=1,
        registered_at=NOW,
        source_host="192.0.2.1",
        source_port=5060,
        transport="udp",
        edge_id="e1",
    )


@pytest.mark.parametrize(
    ("left", "expected"),
    [(3600.0, 3600), (59.6, 60), (59.4, 59), (0.2, 1), (0.0, 0), (-5.0, 0)],
)
def test_contact_expires_is_binding_remaining(left: float, expected: int) -> None:
    # RFC 3261 §10.3 step 8: the 200 lists each binding with "an expires
    # parameter ... indicating its expiration interval chosen by the registrar".
    binding = _binding(NOW + left)
    assert binding.remaining(NOW) == expected
    assert _contact_value(binding, NOW) == b"<sip:a@192.0.2.1>;expires=%d" % expected

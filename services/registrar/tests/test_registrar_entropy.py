"""The registrar's nonce entropy: pooled, never handed out twice."""

from __future__ import annotations

from typing import cast

from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from sipmesh_bus.config import NatsConfig
from sipmesh_registrar.app import Registrar
from sipmesh_registrar.config import RegistrarConfig, RegistrarSettings


def test_registrar_entropy_is_fresh_across_pool_refills() -> None:
    config = RegistrarConfig(
        nats=NatsConfig(url="nats://127.0.0.1:4222"),
        registrar=RegistrarSettings(domain="example.com"),
    )
    registrar = Registrar(
        config,
        cast(JetStreamContext, None),  # not used until start()
        secret=b"entropy-test-secret-0123456789ab",
        registry=CollectorRegistry(),
    )
    drawn = [registrar._entropy() for _ in range(2000)]  # several pools
    assert {len(e) for e in drawn} == {12}
    assert len(set(drawn)) == len(drawn)

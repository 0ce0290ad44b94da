"""nats.jetstream_replicas: from the config to ensure_jetstream, on a real nats-server."""

from __future__ import annotations

import nats
import pytest
from nats.js.errors import APIError

from sipmesh_bus import kv
from sipmesh_bus.config import ConfigError, ServiceConfig, load_config
from sipmesh_bus.natsserver import NatsServer

pytestmark = pytest.mark.integration

_ENV = "SIPMESH_NATS_JETSTREAM_REPLICAS"


def test_jetstream_replicas_defaults_to_one_and_reads_the_environment() -> None:
    assert load_config(ServiceConfig, env={}).nats.jetstream_replicas == 1
    assert load_config(ServiceConfig, env={_ENV: "3"}).nats.jetstream_replicas == 3


@pytest.mark.parametrize("value", ["0", "6", "three"])
def test_jetstream_replicas_out_of_range_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"nats\.jetstream_replicas"):
        load_config(ServiceConfig, env={_ENV: value})


async def test_the_setting_reaches_the_server(nats_server: NatsServer) -> None:
    # A single server holds R1 only, so the configured value shows either as
    # the replicas of what ensure_jetstream made (1) or as the server refusing
    # more replicas than it has (3): both prove the setting got through.
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        one = load_config(ServiceConfig, env={_ENV: "1"}).nats.jetstream_replicas
        await kv.ensure_jetstream(js, replicas=one)
        calls = await js.stream_info(kv.STREAM_CALLS)
        assert calls.config.num_replicas == 1
        location = await js.stream_info(f"KV_{kv.BUCKET_LOCATION}")
        assert location.config.num_replicas == 1

        await js.delete_stream(kv.STREAM_CALLS)
        await js.delete_key_value(kv.BUCKET_LOCATION)
        three = load_config(ServiceConfig, env={_ENV: "3"}).nats.jetstream_replicas
        with pytest.raises(APIError) as exc_info:
            await kv.ensure_jetstream(js, replicas=three)
        # JSStreamReplicasNotSupportedErr: "replicas > 1 not supported in non-clustered mode"
        assert exc_info.value.err_code == 10074
    finally:
        await nc.close()

"""sipmesh_bus.runtime without NATS: run_service's exits."""

from __future__ import annotations

import pytest

from sipmesh_bus.config import ConfigError
from sipmesh_bus.runtime import StoppedError, run_service


def test_run_service_config_error_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def main() -> None:
        raise ConfigError('config error: edge.sip_port: Expected int >= 0, got "abc"')

    with pytest.raises(SystemExit) as exc_info:
        run_service(main())
    assert exc_info.value.code == 2
    assert capsys.readouterr().err == 'config error: edge.sip_port: Expected int >= 0, got "abc"\n'


def test_run_service_stopped_before_connecting_is_a_clean_exit() -> None:
    async def main() -> None:
        raise StoppedError("stopped before NATS was reachable")

    run_service(main())  # returns: nothing raised


def test_run_service_returns_after_main() -> None:
    ran = []

    async def main() -> None:
        ran.append(True)

    run_service(main())
    assert ran == [True]

"""Fixtures of the serving tests: a real ``trident serve`` per module, stopped after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serve_fixtures import Server, start_server, stop_server


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """``serving(artifact, *args, api_key=None)`` starts a server that is stopped after the module."""
    started: list[Server] = []

    def start(artifact: Path | list[Path], *args: str, api_key: str | None = None) -> Server:
        log = tmp_path_factory.mktemp("serve") / "server.log"
        started.append(start_server(artifact, log, *args, api_key=api_key))
        return started[-1]

    yield start
    for server in started:
        stop_server(server)

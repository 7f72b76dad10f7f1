"""Feature-store fixtures: a real redis-server on a free port in a temp folder (never skipped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (no persistence) for the session; fails loudly when not installed."""
    from fraudops.exceptions import ServiceError
    from fraudops.stack import process
    from fraudops.stack.services import redis_spec

    folder = tmp_path_factory.mktemp("redis")
    try:
        spec = redis_spec(folder / "data", folder, folder, process.free_port())
        process.start(spec)
    except ServiceError as err:
        pytest.fail(str(err))
    try:
        yield spec.url
    finally:
        process.stop(spec)

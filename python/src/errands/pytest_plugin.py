"""pytest plugin (auto-registered via the ``pytest11`` entry point): the ``errands_server`` fixture.

It replaces a fake broker (fakeredis and the like): each test gets a real, throwaway server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import ServerHandle, server

__all__ = ["errands_server"]


@pytest.fixture
def errands_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerHandle]:
    """A fresh in-memory errands server for one test; ``ERRANDS_URL`` points at it meanwhile.

    Yields a :class:`~errands.testing.ServerHandle` (``.url``, ``.env``, ``.logs()``).
    """
    with server() as handle:
        monkeypatch.setenv("ERRANDS_URL", handle.url)
        monkeypatch.delenv("ERRANDS_TOKEN", raising=False)
        yield handle

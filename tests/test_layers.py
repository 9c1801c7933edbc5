"""The layer rule of tests/layers.py, and the watch that keeps the markers honest."""

from __future__ import annotations

import socket

import pytest

from tests.layers import LayerError, Watch, layers_of


def test_a_test_using_nothing_special_is_unit() -> None:
    assert layers_of({"tmp_path", "monkeypatch"}, ["sqlite"], set()) == {"unit"}


@pytest.mark.parametrize(
    ("fixtures", "params", "layers"),
    [
        ({"flow", "stack"}, [], {"integration"}),
        ({"procs", "tmp_path"}, [], {"integration"}),
        ({"store"}, ["postgresql"], {"pg"}),
        ({"pg"}, [], {"pg"}),
        ({"stack", "store"}, ["postgresql"], {"integration", "pg"}),
        ({"chrome", "recorder"}, [], {"browser", "integration"}),
    ],
)
def test_layers_come_from_the_fixtures_and_parameters(
    fixtures: set[str], params: list[str], layers: set[str]
) -> None:
    assert layers_of(fixtures, params, set()) == layers


def test_explicit_markers_add_to_what_the_rule_sees() -> None:
    assert layers_of(set(), [], {"slow"}) == {"slow"}
    assert layers_of({"procs"}, [], {"slow"}) == {"integration", "slow"}
    assert layers_of(set(), [], {"integration", "pg"}) == {"integration", "pg"}
    assert layers_of(set(), [], {"unit"}) == {"unit"}


def test_unit_on_a_test_that_is_not_is_refused() -> None:
    with pytest.raises(LayerError, match="integration"):
        layers_of({"stack"}, [], {"unit"})
    with pytest.raises(LayerError, match="slow"):
        layers_of(set(), [], {"unit", "slow"})


def test_the_watch_notes_processes_and_tcp_but_not_unix_sockets() -> None:
    watch = Watch()
    watch.audit("subprocess.Popen", ("python", ["python"], None, None))
    assert watch.take() == set()  # not watching between tests
    watch.active = True
    watch.audit("socket.bind", (socket.socket, "/tmp/paylink.db.wake"))
    watch.audit("open", ("/etc/hosts", "r", 0))
    assert watch.take() == set()
    watch.audit("socket.connect", (socket.socket, ("127.0.0.1", 5432)))
    watch.audit("subprocess.Popen", ("python", ["python"], None, None))
    assert watch.not_allowed({"unit"}) == ["opened a TCP connection", "started a process"]
    watch.audit("socket.bind", (socket.socket, ("127.0.0.1", 0)))
    assert watch.not_allowed({"integration"}) == []
    assert watch.take() == set()  # what was reported is forgotten


def test_the_watch_notes_postgresql_for_tests_without_pg() -> None:
    class PsycopgConnection:  # what the pool listener is handed, by its module
        __module__ = "psycopg"

    watch = Watch()
    watch.active = True
    watch.connected(PsycopgConnection(), None)
    assert watch.not_allowed({"integration"}) == ["connected to PostgreSQL"]
    watch.connected(PsycopgConnection(), None)
    assert watch.not_allowed({"pg"}) == []

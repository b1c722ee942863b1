"""How `taskfire worker` reads its options, without a server."""

from __future__ import annotations

from taskfire import cli


def test_burst_is_a_switch_that_leaves_the_modules_alone(monkeypatch):
    monkeypatch.delenv("TASKFIRE_BURST", raising=False)
    args = cli.parser().parse_args(["worker", "--burst", "myapp.jobs", "--queues", "a,b"])
    config = cli.worker_config(args)
    assert config.burst is True and config.modules == ("myapp.jobs",) and config.queues == ("a", "b")
    assert cli.worker_config(cli.parser().parse_args(["worker", "myapp.jobs"])).burst is False


def test_burst_from_the_environment(monkeypatch):
    monkeypatch.setenv("TASKFIRE_BURST", "1")
    assert cli.worker_config(cli.parser().parse_args(["worker", "myapp.jobs"])).burst is True

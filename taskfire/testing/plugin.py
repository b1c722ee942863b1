"""taskfire's pytest plugin, registered through the `pytest11` entry point and off until
enabled: `pytest --taskfire`, or in the pytest configuration

    [tool.pytest.ini_options]
    taskfire = true

Enabled, it adds the fixtures of `taskfire.testing.fixtures`. Off, it adds nothing but
the option, so installing taskfire takes no fixture name from a project.
"""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    parser.addini("taskfire", type="bool", default=False,
                  help="add taskfire's fixtures: taskfire_server (one throwaway embedded server per run) and "
                       "tf (a client under a fresh key prefix per test)")
    parser.getgroup("taskfire").addoption("--taskfire", action="store_true", default=False,
                                          help="add taskfire's fixtures (as the `taskfire = true` ini option does)")


def pytest_configure(config: Any) -> None:
    if config.getoption("taskfire") or config.getini("taskfire"):
        config.pluginmanager.import_plugin("taskfire.testing.fixtures")

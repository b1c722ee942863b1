"""taskfire in a Flask application (`pip install 'taskfire[flask]'`), as a Flask extension:

    tasks = FlaskTaskfire()

    def create_app():
        app = Flask(__name__)
        app.config.update(TASKFIRE_REDIS_URL="redis://...", SECRET_KEY="...")
        tasks.init_app(app, dashboard="/admin/taskfire", authorize=admin_only)
        return app

`init_app` makes the app's client from its config (TASKFIRE_REDIS_URL, TASKFIRE_PREFIX,
TASKFIRE_RETENTION; unset keys fall back to the environment, as `Taskfire()` does); it is
the default client of `job.enqueue` and `tasks.client` in a request. With `dashboard`,
the dashboard's blueprint is mounted at that path behind the app's own login:
`authorize()` runs before every dashboard request, in the request's context, and returns
True (go on), False (403), or a response to send instead (a redirect to the login page).
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask, abort, current_app, request

from ..client import Taskfire
from ..errors import ConfigError

#: What `authorize` may return: True, False, or a response (a redirect to the login page).
Authorize = Callable[[], Any]


class FlaskTaskfire:
    """The extension: one object for any number of apps (`init_app` each)."""

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        if app is not None:
            self.init_app(app, **options)

    def init_app(self, app: Flask, *, dashboard: str | None = None, authorize: Authorize | None = None,
                 read_only: bool = False) -> Taskfire:
        """Makes the app's client (and mounts the dashboard at `dashboard`, if given);
        returns the client."""
        tf = Taskfire(app.config.get("TASKFIRE_REDIS_URL"), prefix=app.config.get("TASKFIRE_PREFIX"),
                      retention=app.config.get("TASKFIRE_RETENTION"))
        app.extensions["taskfire"] = tf
        if dashboard is not None:
            mount_dashboard(app, tf, dashboard, authorize, read_only)
        return tf

    @property
    def client(self) -> Taskfire:
        """The client of the app handling the current request (or app context)."""
        return current_app.extensions["taskfire"]  # type: ignore[no-any-return]


def mount_dashboard(app: Flask, tf: Taskfire, url_prefix: str, authorize: Authorize | None,
                    read_only: bool = False) -> None:
    """Mounts the dashboard blueprint on `app` at `url_prefix`, each of its requests
    first passing `authorize` (see the module's docstring)."""
    from taskfire_dashboard import register

    if authorize is None:
        raise ConfigError("mounting the dashboard needs authorize=: a function of no arguments that says whether "
                          "the current request may see it (e.g. lambda: current_user.is_admin), or returns a "
                          "redirect to your login page")
    if not app.secret_key:
        raise ConfigError("the dashboard needs the app's SECRET_KEY: its forms carry a CSRF token in the session")

    def check() -> Any:
        verdict = authorize()
        if verdict is True:
            return None
        if verdict is False or verdict is None:
            abort(403, f"{request.path}: not allowed")
        return verdict  # a response: the login page, say

    register(app, tf, url_prefix=url_prefix, read_only=read_only)
    # Before the blueprint's own guard (CSRF), and for this app's dashboard requests only.
    app.before_request_funcs.setdefault("taskfire", []).insert(0, check)

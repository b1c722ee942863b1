"""A Flask shop that enqueues jobs from its views and shows the taskfire dashboard to its
logged-in admins only (taskfire.contrib.flask).

    python -m examples.flask_app        # the embedded server, a worker, the app on :5000

Then: `curl -X POST localhost:5000/orders -d email=ann@example.com` answers 202 with the
job's id; `curl 'localhost:5000/orders/<id>?wait=10'` waits for its receipt (tf.wait);
http://127.0.0.1:5000/admin/taskfire/ asks for the admin's login first (admin / the
password in SHOP_ADMIN_PASSWORD, "admin" by default).
"""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Any

from flask import Flask, abort, redirect, request, session, url_for

from taskfire import NotFoundError
from taskfire.contrib.flask import FlaskTaskfire

from .jobs import send_receipt

tasks = FlaskTaskfire()


def admin_only() -> Any:
    """The dashboard's guard: the shop's own login, or off to the login page."""
    if session.get("user") == "admin":
        return True
    return redirect(url_for("login", next=request.full_path))


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=os.environ.get("SHOP_SECRET_KEY") or secrets.token_hex(32),
                      ADMIN_PASSWORD=os.environ.get("SHOP_ADMIN_PASSWORD") or "admin")
    app.config.update(config or {})
    tasks.init_app(app, dashboard="/admin/taskfire", authorize=admin_only)

    @app.post("/orders")
    def place_order() -> Any:
        email = request.form.get("email") or abort(400, "email is required")
        order_id = secrets.randbelow(10**6)
        return {"order_id": order_id, "job_id": send_receipt.enqueue(order_id, email)}, 202

    @app.get("/orders/<job_id>")
    def order_status(job_id: str) -> Any:
        tf = tasks.client
        wait = request.args.get("wait", type=float)
        try:
            job = tf.wait(job_id, timeout=min(wait, 30)) if wait else tf.get_job(job_id)
        except TimeoutError:  # not finished yet: say where it is
            job = tf.get_job(job_id)
        except NotFoundError:
            job = None
        if job is None:
            abort(404)
        return {"state": job.state, "receipt": job.result}

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "POST":
            password = request.form.get("password", "").encode()
            if request.form.get("user") == "admin" and hmac.compare_digest(password, app.config["ADMIN_PASSWORD"].encode()):
                session["user"] = "admin"
                target = request.args.get("next", "/")
                return redirect(target if target.startswith("/") and not target.startswith("//") else "/")
            return "wrong user or password", 401
        return ('<form method="post"><input name="user" placeholder="user"> '
                '<input name="password" type="password" placeholder="password"> <button>Sign in</button></form>')

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect("/")

    return app

"""`python -m examples.flask_app`: the embedded server, a worker and the shop."""

from __future__ import annotations

import os

from examples.launcher import running

from . import create_app


def main() -> None:
    port = int(os.environ.get("SHOP_PORT") or 5000)
    with running(["examples.flask_app.jobs"]) as tf:
        app = create_app({"TASKFIRE_REDIS_URL": tf.url, "TASKFIRE_PREFIX": tf.prefix})
        print(f"shop on http://127.0.0.1:{port}/ (dashboard: /admin/taskfire/, user admin)", flush=True)
        app.run(host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()

"""`python -m examples.fastapi_app`: the embedded server, a worker and the service (uvicorn)."""

from __future__ import annotations

import os

import uvicorn

from examples.launcher import running

from . import create_app


def main() -> None:
    port = int(os.environ.get("SHOP_PORT") or 8000)
    with running(["examples.fastapi_app.jobs"]) as tf:
        print(f"service on http://127.0.0.1:{port}/ (dashboard: /admin/taskfire/, user admin)", flush=True)
        uvicorn.run(create_app(tf.url, tf.prefix), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()

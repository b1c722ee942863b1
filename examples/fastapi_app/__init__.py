"""A FastAPI service that enqueues and awaits jobs with AsyncTaskfire (never blocking its
event loop), and serves the taskfire dashboard behind its own auth dependency (HTTP Basic
here; any FastAPI dependency works): taskfire.contrib.fastapi.

    python -m examples.fastapi_app      # the embedded server, a worker, the service on :8000

Then: `curl -X POST localhost:8000/photos/7/thumbnail?size=128` (202, the job's id),
`curl 'localhost:8000/jobs/<id>?wait=10'` (its result), and
http://127.0.0.1:8000/admin/taskfire/ (user admin, password SHOP_ADMIN_PASSWORD, "admin"
by default).
"""

from __future__ import annotations

import os
import secrets
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from taskfire import AsyncTaskfire, NotFoundError, Taskfire
from taskfire.contrib.fastapi import dashboard_router

from .jobs import make_thumbnail

basic = HTTPBasic(realm="taskfire")


def require_admin(credentials: HTTPBasicCredentials = Depends(basic)) -> str:
    """The service's own auth dependency, which the dashboard's route runs too."""
    password = (os.environ.get("SHOP_ADMIN_PASSWORD") or "admin").encode()
    if not (secrets.compare_digest(credentials.username.encode(), b"admin")
            and secrets.compare_digest(credentials.password.encode(), password)):
        raise HTTPException(401, "wrong user or password", headers={"WWW-Authenticate": 'Basic realm="taskfire"'})
    return credentials.username


def create_app(url: str | None = None, prefix: str | None = None) -> FastAPI:
    """The service, on the store at `url` under `prefix` (default: TASKFIRE_REDIS_URL and
    TASKFIRE_PREFIX, as for any client)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncTaskfire(url, prefix=prefix) as tf:  # one per process, shared by every request
            app.state.tf = tf
            yield

    app = FastAPI(lifespan=lifespan)
    # The dashboard is sync (Flask): it gets a sync client of its own.
    app.include_router(dashboard_router(Taskfire(url, prefix=prefix), prefix="/admin/taskfire",
                                        dependencies=[Depends(require_admin)],
                                        secret_key=os.environ.get("SHOP_SECRET_KEY")))

    @app.post("/photos/{photo_id}/thumbnail", status_code=202)
    async def thumbnail(photo_id: int, size: int = 256) -> dict[str, Any]:
        return {"job_id": await make_thumbnail.enqueue_async(photo_id, size)}

    @app.get("/jobs/{job_id}")
    async def job_status(request: Request, job_id: str, wait: float = 0) -> dict[str, Any]:
        tf: AsyncTaskfire = request.app.state.tf
        try:
            job = await tf.wait(job_id, timeout=min(wait, 30)) if wait else await tf.get_job(job_id)
        except TimeoutError:
            job = await tf.get_job(job_id)
        except NotFoundError:
            job = None
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return {"state": job.state, "result": job.result}

    return app

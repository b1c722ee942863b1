"""The FastAPI example's job: an async one, run on the worker's event loop."""

from __future__ import annotations

import asyncio

from taskfire import job


@job(retries=3)
async def make_thumbnail(photo_id: int, size: int) -> str:
    await asyncio.sleep(0.01)  # the image library's await
    return f"photo {photo_id}: {size}x{size} thumbnail"

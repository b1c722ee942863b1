"""Checked by mypy (tests/integration/test_cli.py), never run: @job keeps the function's signature."""

from datetime import timedelta

from taskfire import Taskfire, job


@job(queue="critical", retries=3)
def charge(invoice_id: int, note: str = "") -> str:
    return f"{invoice_id}{note}"


tf = Taskfire("redis://127.0.0.1:1/0")
ok: str = charge.enqueue(7)
ok = charge.enqueue(7, note="x")
ok = charge.schedule(timedelta(minutes=5), 7)
ids: list[str] = charge.enqueue_many([(1,), (2,)])
direct: str = charge(1)
charge.enqueue("seven")  # expect-error
charge.enqueue(7, colour="red")  # expect-error
charge.schedule(timedelta(seconds=1))  # expect-error
wrong: int = charge(1)  # expect-error


async def from_asyncio() -> None:
    """AsyncTaskfire and enqueue_async keep the signature too."""
    from taskfire import AsyncTaskfire

    atf = AsyncTaskfire("redis://127.0.0.1:1/0")
    job_id: str = await charge.enqueue_async(7)
    job_id = await charge.schedule_async(timedelta(minutes=5), 7, note="x")
    job_id = await atf.enqueue(charge, 7)
    await charge.enqueue_async("seven")  # expect-error
    not_awaited: str = charge.enqueue_async(7)  # expect-error

"""Changing a job's state: the one state changer, shared by the client and the worker.

A change is elected (the filters' `on_state_election` may replace the state; the states
they replace are kept in the history), stored in one script call that checks the job's
current state (and lease) first, and then applied (`on_state_applied` hooks). A worker
elects a run's outcome itself (the retry policy first) and stores outcomes in groups
(server/finisher.py), then calls `applied` here.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

from .filters import ApplyStateContext, ElectStateContext, JobFilter, pipeline, run_applied, run_election
from .states import Enqueued, Failed, Scheduled, State, Succeeded
from .storage import Applied, Storage, Transition

log = logging.getLogger("taskfire")


def transition_for(job_id: str, state: State, expected: Sequence[str] = (), *,
                   unless: Sequence[str] = (), token: str = "",
                   fields: dict[str, bytes | str] | None = None,
                   elected: Sequence[State] = ()) -> Transition:
    """The storage call for moving a job to `state`, recording any states elected before
    it (a failure that became a retry) in its history first."""
    if not elected and not fields and isinstance(state, Succeeded):  # most runs: nothing to look for
        return Transition(job_id=job_id, state=state.name, entries=[(state.name, state.entry())],
                          expected=tuple(expected), unless=tuple(unless), token=token, final=True)
    queue, front, due = "", False, ""
    if isinstance(state, Enqueued):
        queue, front = state.queue or "", state.front  # (Enqueued checked the name)
    elif isinstance(state, Scheduled):
        due = state.due_arg()
    entries = [(s.name, s.entry()) for s in (*elected, state)]
    failure = next((s for s in (state, *elected) if isinstance(s, Failed) and s.exception_type), None)
    if failure is not None:  # what bulk actions filter on, and the retries list shows
        fields = {**(fields or {}), "error_type": failure.exception_type or ""}
    return Transition(job_id=job_id, state=state.name, entries=entries, expected=tuple(expected),
                      unless=tuple(unless), token=token, queue=queue, front=front, due=due, final=state.final,
                      fields=fields or {})


class Change(NamedTuple):
    """A change of state elected and ready to store (`transition`); `stored` then runs
    the filters' applied hooks."""

    transition: Transition
    state: State
    filters: list[JobFilter]

    def stored(self, applied: Applied) -> None:
        if applied.code == 1 and self.filters:
            StateChanger.applied(self.filters, self.transition.job_id, "", applied.old, self.state,
                                 raise_errors=True)


def elect(job_id: str, state: State, expected: Sequence[str] = (), *, unless: Sequence[str] = (),
          token: str = "", fields: dict[str, bytes | str] | None = None,
          filters: list[JobFilter] | None = None) -> Change:
    """The change to store for moving a job to `state`, through `filters` (default: the
    process-wide ones), whose elections may replace it."""
    filters = pipeline() if filters is None else filters
    elected: list[State] = []
    if filters:
        election = ElectStateContext(job_id, "", expected[0] if len(expected) == 1 else None, state)
        state = run_election(filters, election)
        elected, fields = election.elected, {**(fields or {}), **election.fields}
    return Change(transition_for(job_id, state, expected, unless=unless, token=token, fields=fields,
                                 elected=elected), state, filters)


class StateChanger:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def change(self, job_id: str, state: State, expected: Sequence[str] = (), *, unless: Sequence[str] = (),
               token: str = "", fields: dict[str, bytes | str] | None = None,
               filters: list[JobFilter] | None = None) -> Applied:
        """Moves a job to `state` if it is in one of `expected` (any, if empty) and none of
        `unless` (and holds the lease `token`, if given), through `filters` (default: the
        process-wide ones)."""
        change = elect(job_id, state, expected, unless=unless, token=token, fields=fields, filters=filters)
        applied = self.storage.transition(change.transition)
        change.stored(applied)
        return applied

    @staticmethod
    def applied(filters: list[JobFilter], job_id: str, job_name: str, old: str, state: State,
                raise_errors: bool = False) -> None:
        """Runs the filters' `on_state_unapplied` and `on_state_applied` for a stored change.
        A worker logs a filter that fails here (the change is stored already); a client
        caller sees the exception."""
        try:
            run_applied(filters, ApplyStateContext(job_id, job_name, old, state))
        except Exception:
            if raise_errors:
                raise
            log.exception("job %s (%s): a filter failed after its %s state was stored", job_id, job_name,
                          state.name)

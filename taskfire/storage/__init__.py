"""The storage layer: the only code that speaks to Redis (see store.py for the map)."""

from .faults import REDIS_ERRORS, describe_error
from .scripts import TRANSIENT_ERRORS
from .store import Storage
from .wire import Applied, DueRun, Fetch, FetchedJob, FetchRequest, NewBatch, NewJob, Transition

__all__ = ["Storage", "TRANSIENT_ERRORS", "REDIS_ERRORS", "describe_error", "Applied", "DueRun", "Fetch",
           "FetchedJob", "FetchRequest", "NewBatch", "NewJob", "Transition"]

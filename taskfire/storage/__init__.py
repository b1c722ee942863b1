"""The storage layer: the only code that speaks to Redis (see store.py for the map).
Everything outside it imports from here, never from its modules."""

from .aio import AsyncStorage
from .connection import DEFAULT_URL, probe
from .faults import REDIS_ERRORS, check_access, describe_error
from .keys import DEFAULT_PREFIX, DERIVED_INDEXES
from .monitor import STATES
from .scripts import TRANSIENT_ERRORS
from .store import Storage
from .wire import (MISSING, WAITING, Applied, DueRun, Fetch, FetchedJob, FetchRequest, NewBatch, NewJob,
                   Transition)

__all__ = ["Storage", "AsyncStorage", "TRANSIENT_ERRORS", "REDIS_ERRORS", "describe_error", "check_access",
           "probe", "DEFAULT_URL", "DEFAULT_PREFIX", "DERIVED_INDEXES", "STATES", "MISSING", "WAITING",
           "Applied", "DueRun", "Fetch", "FetchedJob", "FetchRequest", "NewBatch", "NewJob", "Transition"]

"""Testing code that enqueues jobs, against real Redis.

    from taskfire.testing import drain
    drain(tf)            # runs every waiting job in this process; see drain.py

With pytest, `taskfire.testing.plugin` (an entry point, off until enabled with
`--taskfire` or `taskfire = true` in the pytest configuration) adds two fixtures: a
throwaway embedded server for the whole run (`taskfire_server`) and a `tf` client under a
key prefix of its own for each test.
"""

from .drain import Drained, drain

__all__ = ["drain", "Drained"]

"""A job module that fails at import: a worker given it must refuse to start."""

from taskfire import job


@job
def never_registered() -> None: ...


raise ImportError("tests.broken_jobs: a dependency is missing")

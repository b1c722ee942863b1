"""Integration syncs: Salesforce, Authenticom, DealerTrend, Campaign, CTM, GoogleAds, CDK,
MetaAds and AdsCreatives, each a job on its own CRON from per-environment configuration,
never two runs of one sync at once across instances, retried with backoff when the
partner fails, and triggerable by hand. Here they call a local fake of the partners' APIs.

Run it (from the repository's root; the embedded server, the fake service and two
worker instances start together, Ctrl-C stops them):

    python -m examples.syncs                   # the dev schedules
    SYNC_ENV=staging python -m examples.syncs  # or production

and trigger one by hand from another shell (with TASKFIRE_REDIS_URL set to the server
it printed): `taskfire recurring trigger salesforce`.

- `syncs.toml`: the nine schedules, per environment
- `jobs.py`: the sync jobs (mutex, retries, what a run does)
- `fake_service.py`: the partners' APIs, faked, noting every request
"""

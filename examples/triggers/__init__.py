"""Workflow triggers: start a workflow job every N minutes, or when a URL's content
changes, with each trigger's state (last checked, last fired, fire count, last error)
kept in Redis beside it.

Run it (from the repository's root; the embedded server, a worker and a local page that
changes every 6 seconds start together, Ctrl-C stops them):

    python -m examples.triggers

In your own code:

    from examples.triggers import checker, workflows
    from examples.triggers.store import Triggers

    checker.install(tf)                         # the recurring checker, every second
    triggers = Triggers(tf)
    triggers.add_interval("nightly-digest", workflows.on_schedule, "5 minutes")
    triggers.add_poll("price-page", "https://example.com/prices", workflows.page_changed,
                      "30s", fire_always=False)
    triggers.get("price-page")                  # definition and state

and run `taskfire worker examples.triggers.checker examples.triggers.workflows`.

- `store.py`: triggers and their state in Redis
- `checker.py`: the recurring checker and the per-trigger check (fetch, hash, 429 back-off)
- `workflows.py`: sample workflows; `page_server.py`: a local page to poll
"""

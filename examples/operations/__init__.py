"""A residence's recurring operations: a daily report at 2 AM, invoices on the 1st at
6 AM, an hourly overdue check, a Sunday-midnight cleanup and a backup every 6 hours,
declared per environment in operations.toml; an invoice chain (create -> ledger ->
notify), a batch of per-resident invoices with a summary, and a payment reminder 24
hours before each due date that skips itself once the invoice is paid. Jobs are spread
over the critical, default and low-priority queues.

Run it (from the repository's root; the embedded server and a worker that syncs the
catalogue start together, a few invoices are sent, Ctrl-C stops them):

    python -m examples.operations               # the dev schedules
    OPS_ENV=production python -m examples.operations

- `operations.toml`: the catalogue, with its dev overrides
- `jobs.py`: every job, and the two workflows (`bill`, `invoice_all`)
- `store.py`: residents, invoices, ledger and outbox, in Redis
"""

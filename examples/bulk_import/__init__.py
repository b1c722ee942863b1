"""Bulk import behind an API: a client posts up to 1,000 platforms, gets 202 at once, and
follows the import's counts while a worker creates them.

Run it (from the repository's root; the embedded server, a worker and the API start
together, Ctrl-C stops them):

    python -m examples.bulk_import

then, in another shell:

    curl -s -X POST localhost:5000/api/platforms/bulk -H 'X-API-Key: acme-key' \\
         -H 'Content-Type: application/json' \\
         -d '{"platforms": [{"name": "Shop", "url": "https://shop.example", "kind": "web"}]}'
    curl -s localhost:5000/api/platforms/bulk/<import_id>/status -H 'X-API-Key: acme-key'

Settings: BULK_IMPORT_DB (a SQLAlchemy URL; default sqlite:///bulk_import.db),
BULK_IMPORT_API_KEYS ("key=tenant,key=tenant"; default acme-key=acme,globex-key=globex),
BULK_IMPORT_PORT (5000), BULK_IMPORT_RECORD_DELAY (seconds of pretend work per record, to
watch the counts move; 0.005 when run this way).

- `api.py`: the Flask API (validation, tenants, 202, status)
- `jobs.py`: the job, 100 records per transaction, progress after each
- `db.py`: imports, items and platforms in the database
- `validation.py`: what a request must look like
"""

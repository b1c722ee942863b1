"""`python -m examples.bulk_import`: the embedded server, a worker and the API."""

from __future__ import annotations

import os

from examples.launcher import running

from .api import create_app
from .db import DEFAULT_URL, Database


def parse_api_keys(text: str) -> dict[str, str]:
    """"key=tenant,key=tenant" -> {key: tenant}."""
    keys = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, tenant = pair.partition("=")
        if not sep or not key or not tenant:
            raise SystemExit(f"BULK_IMPORT_API_KEYS: {pair!r} is not key=tenant")
        keys[key] = tenant
    return keys


def main() -> None:
    db_url = os.environ.get("BULK_IMPORT_DB") or DEFAULT_URL
    api_keys = parse_api_keys(os.environ.get("BULK_IMPORT_API_KEYS") or "acme-key=acme,globex-key=globex")
    port = int(os.environ.get("BULK_IMPORT_PORT") or 5000)
    env = {"BULK_IMPORT_DB": db_url,
           "BULK_IMPORT_RECORD_DELAY": os.environ.get("BULK_IMPORT_RECORD_DELAY") or "0.005"}
    with running(["examples.bulk_import.jobs"], env=env) as tf:
        app = create_app(tf, Database(db_url), api_keys)
        print(f"bulk import API on http://127.0.0.1:{port}/ (database {db_url}; "
              f"tenants: {', '.join(f'{t} (X-API-Key: {k})' for k, t in api_keys.items())})", flush=True)
        app.run(host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()

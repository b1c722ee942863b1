"""`python -m examples.django_app`: migrations, an admin user, the embedded server, a
worker (`manage.py taskfire_worker`) and the site (runserver), until Ctrl-C."""

from __future__ import annotations

import os
import sys

from examples.launcher import running


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    port = os.environ.get("SHOP_PORT") or "8000"
    with running([], command=[sys.executable, "-m", "examples.django_app.manage", "taskfire_worker"]):
        import django
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        users = get_user_model().objects
        if not users.filter(username="admin").exists():
            users.create_superuser("admin", "admin@example.com", os.environ.get("SHOP_ADMIN_PASSWORD") or "admin")
        print(f"shop on http://127.0.0.1:{port}/orders (dashboard: /admin/taskfire/, user admin)", flush=True)
        call_command("runserver", f"127.0.0.1:{port}", "--noreload")


if __name__ == "__main__":
    main()

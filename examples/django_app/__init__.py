"""A Django shop with taskfire.contrib.django: a view that creates an order and enqueues
its receipt when the transaction commits (`enqueue_on_commit`), a job that reads and
writes the order through the ORM in a worker (`manage.py taskfire_worker`), and the
dashboard at /admin/taskfire/ behind Django's staff login.

    python -m examples.django_app     # migrates, the embedded server, a worker, the site on :8000

Then: `curl -X POST localhost:8000/orders -d email=ann@example.com` (202, the order and
its job), `curl 'localhost:8000/orders/1?wait=10'` (its receipt, once the worker wrote
it), and http://127.0.0.1:8000/admin/taskfire/ (user admin, password SHOP_ADMIN_PASSWORD,
"admin" by default).
"""

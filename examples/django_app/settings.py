"""The example shop's Django settings (DJANGO_SETTINGS_MODULE=examples.django_app.settings).
taskfire's own are TASKFIRE below; the Redis URL and key prefix come from
TASKFIRE_REDIS_URL and TASKFIRE_PREFIX, as for `Taskfire()`."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("TASKFIRE_DATA_DIR") or Path.home() / ".local" / "share" / "taskfire")

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY") or "example-only-not-secret"
DEBUG = os.environ.get("SHOP_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "taskfire.contrib.django",
    "examples.django_app.shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "examples.django_app.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("SHOP_DB") or str(DATA / "django-shop.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
USE_TZ = True

TASKFIRE = {"QUEUES": "default"}  # job modules: each installed app's `jobs` (here shop/jobs.py)

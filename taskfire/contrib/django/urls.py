"""The dashboard in a URLconf, behind Django's staff login:

    path("admin/taskfire/", include("taskfire.contrib.django.urls")),
"""

from __future__ import annotations

from django.urls import re_path

from .views import dashboard

app_name = "taskfire"
urlpatterns = [re_path(r"^(?P<path>.*)$", dashboard, name="dashboard")]

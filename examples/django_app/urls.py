from django.contrib import admin
from django.urls import include, path

from .shop import views

urlpatterns = [
    path("admin/taskfire/", include("taskfire.contrib.django.urls")),  # before admin/: its catch-all
    path("admin/", admin.site.urls),
    path("orders", views.place_order),
    path("orders/<int:order_id>", views.order_status),
]

"""Routes of the kernels app, included under the base URL."""

from django.urls import path, re_path

from kernels import views
from kernels.spec_views import urlpatterns as spec_patterns

# jupyter_server's kernel id pattern: five dash-separated words.
KERNEL_ID = r"(?P<kernel_id>\w+-\w+-\w+-\w+-\w+)"

urlpatterns = [
    *spec_patterns,
    path("api/kernels", views.kernels_root, name="kernels"),
    re_path(rf"^api/kernels/{KERNEL_ID}$", views.kernel_detail, name="kernel"),
    re_path(
        rf"^api/kernels/{KERNEL_ID}/(?P<action>restart|interrupt)$",
        views.kernel_action,
        name="kernel-action",
    ),
    path("api/sessions", views.sessions_root, name="sessions"),
    path("api/sessions/<str:session_id>", views.session_detail, name="session"),
]

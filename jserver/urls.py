"""URLs: every route lives under ``JSERVER_BASE_URL``."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from accounts.views import PasswordChangeView, admin_login, logout_view
from jserver import views

routes = [
    path("api", views.api_root, name="api-root"),
    path("api/status", views.api_status, name="api-status"),
    # The apps' routes do not overlap, except accounts' lab/api/settings and
    # lab/api/workspaces before frontend's lab/api/ catch-all. The API comes
    # first: Django tries routes in order, and every include passed over costs
    # a list of what it tried, for every request.
    path("", include("contents.urls")),
    path("", include("kernels.urls")),
    path("", include("accounts.urls")),
    path("", include("frontend.urls")),
    # The admin's own login, logout and password pages are the site's (throttled,
    # audited) ones.
    path("admin/login/", admin_login),
    path("admin/logout/", logout_view),
    path("admin/password_change/", PasswordChangeView.as_view()),
    path("admin/", admin.site.urls),
    # Last: anything else ending in "/" is retried without it.
    re_path(r"^(?P<path>.+)/$", views.strip_trailing_slash),
]

urlpatterns = [path(settings.URL_PREFIX, include(routes))]

handler404 = "jserver.views.not_found"
handler500 = "jserver.views.server_error"

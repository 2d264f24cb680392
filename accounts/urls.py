from django.urls import path, re_path

from accounts import views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/me", views.me, name="api-me"),
    re_path(r"^api/config/(?P<section>\w+)$", views.config_section, name="api-config"),
    path("login", views.LoginView.as_view(), name="login"),
    path("logout", views.logout_view, name="logout"),
    path("password", views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password/done",
        views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("tokens", views.tokens_page, name="tokens"),
    # JupyterLab's per-user settings and workspaces.
    re_path(r"^lab/api/settings/?$", views.lab_settings, name="lab-settings"),
    re_path(r"^lab/api/settings/(?P<plugin_id>.+)$", views.lab_setting),
    re_path(r"^lab/api/workspaces/?$", views.lab_workspaces, name="lab-workspaces"),
    re_path(r"^lab/api/workspaces/(?P<name>.+)$", views.lab_workspace),
]

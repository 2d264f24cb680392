"""Account pages (login, logout, password, tokens, home) and ``/api/me``."""

import datetime
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts import (
    audit,
    config,
    identity,
    labsettings,
    throttle,
    tokens,
    workspaces,
)
from accounts.forms import TokenForm
from accounts.middleware import client_address
from frontend import dashboard
from jserver.api import api_view, json_body, json_response
from jserver.errors import BadRequest, JupyterError


@api_view("GET")
def me(request: HttpRequest, user: User) -> HttpResponse:
    """Return the user's identity and the permissions asked for."""
    permissions = identity.permissions_model(request.GET.get("permissions", ""))
    return json_response(
        {"identity": identity.identity_model(user), "permissions": permissions}
    )


@api_view("GET", "PUT", "PATCH")
def config_section(request: HttpRequest, user: User, section: str) -> HttpResponse:
    """Get, replace (204) or merge into (200) one of the user's config sections."""
    if request.method == "PUT":
        config.set_section(user, section, json_body(request))
        return HttpResponse(status=204)
    if request.method == "PATCH":
        return json_response(config.update_section(user, section, json_body(request)))
    return json_response(config.get_section(user, section))


@api_view("GET")
def lab_settings(request: HttpRequest, user: User) -> HttpResponse:
    """List every plugin's settings (only their ids with ``?ids_only=true``)."""
    ids_only = request.GET.get("ids_only") == "true"
    return json_response(labsettings.list_settings(user, ids_only=ids_only))


@api_view("GET", "PUT")
def lab_setting(request: HttpRequest, user: User, plugin_id: str) -> HttpResponse:
    """Get one plugin's settings, or store them from ``{"raw": "<JSON5>"}`` (204)."""
    if request.method == "PUT":
        body = json_body(request)
        raw = body.get("raw") if isinstance(body, dict) else None
        labsettings.save_setting(user, plugin_id, raw)
        return HttpResponse(status=204)
    return json_response(labsettings.get_setting(user, plugin_id))


@api_view("GET", "PUT", "DELETE")
def lab_workspaces(request: HttpRequest, user: User) -> HttpResponse:
    """List the user's workspaces; writing needs a workspace name."""
    if request.method != "GET":
        raise BadRequest(f"Workspace name is required for {request.method}.")
    return json_response(workspaces.list_workspaces(user))


@api_view("GET", "PUT", "DELETE")
def lab_workspace(request: HttpRequest, user: User, name: str) -> HttpResponse:
    """Get, store (204) or delete (204) one of the user's workspaces."""
    if request.method == "PUT":
        workspaces.save_workspace(user, name, request.body)
        return HttpResponse(status=204)
    if request.method == "DELETE":
        workspaces.delete_workspace(user, name)
        return HttpResponse(status=204)
    return json_response(workspaces.get_workspace(user, name))


def safe_next(request: HttpRequest, url: str | None) -> str:
    """Return ``url`` if it stays on this site under the base URL, else the home page.

    Django's check refuses other hosts and schemes, ``//evil``, ``\\\\evil`` and
    control characters; on top of it the path must be under the base URL.
    """
    home = settings.BASE_URL
    if not url:
        return home
    url = url.replace("\\", "/").strip()
    if not url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return home
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path.startswith(home):
        return home
    if parts.path == settings.LOGIN_URL:  # would loop back to the login page
        return home
    return url


class LoginView(auth_views.LoginView):
    """Django's login page, throttled per account and per address, audited."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_redirect_url(self) -> str:
        url = self.request.POST.get("next", self.request.GET.get("next"))
        return safe_next(self.request, url) if url else ""

    def get_default_redirect_url(self) -> str:
        return settings.BASE_URL

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username", "")
        wait = throttle.seconds_blocked(username, client_address(request))
        if wait:
            audit.record(
                "login_throttled",
                actor_name=username,
                address=client_address(request),
            )
            form = self.get_form()
            form.errors.clear()
            minutes = max(1, round(wait / 60))
            form.add_error(
                None,
                "Too many failed login attempts. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
            )
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form) -> HttpResponse:
        user = form.get_user()
        throttle.clear_failures(user.get_username())
        response = super().form_valid(form)
        audit.record(
            "login", actor=user, address=client_address(self.request), method="password"
        )
        return response

    def form_invalid(self, form) -> HttpResponse:
        username = self.request.POST.get("username", "")
        if username:
            throttle.record_failure(username, client_address(self.request))
            audit.record(
                "login_failed",
                actor_name=username,
                address=client_address(self.request),
            )
        return super().form_invalid(form)


@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    """End the session (its row is deleted, so the old cookie is worthless).

    GET is accepted as in jupyter_server, whose front ends navigate to
    ``<base>logout``.
    """
    user = request.user
    if user.is_authenticated:
        audit.record("logout", actor=user, address=client_address(request))
    logout(request)
    return render(request, "registration/logged_out.html")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Change the password; every other session of the user ends."""

    template_name = "registration/password_change_form.html"

    def get_success_url(self) -> str:
        return settings.BASE_URL + "password/done"

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        audit.record(
            "password_changed",
            actor=self.request.user,
            address=client_address(self.request),
        )
        return response


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "registration/password_change_done.html"


@login_required
@require_http_methods(["GET", "POST"])
def tokens_page(request: HttpRequest) -> HttpResponse:
    """List the user's API tokens; create one (shown once) or revoke one."""
    user = request.user
    address = client_address(request)
    form = TokenForm()
    created = None
    status = 200
    if request.method == "POST":
        if "revoke" in request.POST:
            try:
                tokens.revoke_token(user, int(request.POST["revoke"]), address=address)
            except (ValueError, JupyterError):
                messages.error(request, "That token does not exist (any more).")
            else:
                messages.success(request, "Token revoked. It no longer works.")
            return redirect(settings.BASE_URL + "tokens")
        form = TokenForm(request.POST)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            expires_at = (
                timezone.now() + datetime.timedelta(days=days) if days else None
            )
            try:
                token, raw = tokens.create_token(
                    user,
                    form.cleaned_data["name"],
                    expires_at=expires_at,
                    address=address,
                )
            except JupyterError as error:
                form.add_error("name", error.message)
                status = 400
            else:
                created = {"token": token, "raw": raw}
                form = TokenForm()
        else:
            status = 400
    response = render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "created": created,
            "tokens": tokens.list_tokens(user),
            "now": timezone.now(),
        },
        status=status,
    )
    if created:
        response["Cache-Control"] = "no-store"  # the page shows a secret once
    return response


def admin_login(request: HttpRequest) -> HttpResponse:
    """Send the admin's own login to the site's (throttled, audited) login page."""
    if request.user.is_authenticated:
        if not request.user.is_staff:
            return render(request, "staff_only.html", status=403)
        return redirect(safe_next(request, request.GET.get("next")))
    url = settings.LOGIN_URL
    if target := request.GET.get("next"):
        url += "?" + urlencode({"next": safe_next(request, target)})
    return redirect(url)


@login_required
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    """Show the user's home page; a POST shuts down one of their kernels.

    The page: both front ends, recent notebooks, running kernels (each with a
    shut-down button), storage against the quota, API tokens, the admin link.
    """
    user = request.user
    if request.method == "POST":
        kernel_id = request.POST.get("shutdown", "")
        try:
            dashboard.shutdown_kernel(user, kernel_id)
        except JupyterError:
            messages.error(request, "That kernel is not running (any more).")
        except TimeoutError:
            messages.error(request, "The kernel is still shutting down. Reload soon.")
        else:
            messages.success(request, "Kernel shut down.")
        return redirect(settings.BASE_URL)
    return render(
        request,
        "home.html",
        {
            "token_count": len(tokens.list_tokens(user)),
            "notebooks": dashboard.recent_notebooks(user),
            "kernels": dashboard.running_kernels(user),
            "storage": dashboard.storage_use(user),
            "unsandboxed": _sandbox_problem(),
        },
    )


def _sandbox_problem() -> str:
    """Return why kernels run unsandboxed here, or "" (they are sandboxed)."""
    from kernels import sandbox

    facts = sandbox.status()
    return "" if facts.available else facts.reason

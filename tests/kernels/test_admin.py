"""The kernels admin pages that need no running kernel: per-user limits, warnings."""

import pytest

from accounts.models import AuditEvent
from kernels import sandbox
from kernels.models import KernelLimits
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_staff_set_and_remove_a_users_kernel_limits(client_for):
    staff, user = make_user("limits-staff", staff=True), make_user("limited")
    client = client_for(staff)
    page = client.get("/admin/kernels/kernellimits/add/")
    assert page.status_code == 200
    response = client.post(
        "/admin/kernels/kernellimits/add/",
        {
            "owner": user.pk,
            "memory_bytes": "1073741824",
            "max_processes": "",
            "max_open_files": "",
            "max_file_bytes": "",
            "max_kernels": "2",
        },
    )
    assert response.status_code == 302
    row = KernelLimits.objects.get(owner=user)
    assert (row.memory_bytes, row.max_processes, row.max_kernels) == (2**30, None, 2)
    event = AuditEvent.objects.get(action="kernel_limits_set")
    assert event.actor == staff and event.target == "limited"
    listing = client.get("/admin/kernels/kernellimits/").content.decode()
    assert "1.0\xa0GB" in listing and "default" in listing
    response = client.post(
        f"/admin/kernels/kernellimits/{row.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not KernelLimits.objects.exists()
    assert AuditEvent.objects.filter(action="kernel_limits_removed").exists()


def test_users_who_are_not_staff_get_no_kernel_admin(client_for):
    client = client_for(make_user("not-staff"))
    for path in ("/admin/kernels/kernel/", "/admin/kernels/kernellimits/"):
        response = client.get(path)
        assert response.status_code == 302 and "login" in response["Location"]


def test_the_admin_warns_when_kernels_run_unsandboxed(client_for, settings):
    client = client_for(make_user("warn-staff", staff=True))
    settings.SANDBOX_BWRAP = "/nonexistent/bwrap"
    try:
        assert not sandbox.status(refresh=True).available
        page = client.get("/admin/kernels/kernel/").content.decode()
        assert "WITHOUT a sandbox" in page
    finally:
        settings.SANDBOX_BWRAP = None
        sandbox.status(refresh=True)

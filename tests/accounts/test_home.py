"""The home dashboard: plain HTML, a way into both front ends, tokens, the admin."""

import pytest
from django.test import override_settings

from tests.factories import make_token

pytestmark = pytest.mark.django_db


def test_home_needs_a_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/login?next=/"


def test_home_opens_both_front_ends_and_the_tokens(client_for, user):
    make_token(user)
    html = client_for(user).get("/").content.decode()
    assert '<a class="button primary" href="/lab">Open JupyterLab</a>' in html
    assert '<a class="button primary" href="/tree">Open Notebook 7</a>' in html
    assert 'href="/tokens"' in html and "You have 1 token." in html
    assert "Welcome, Alice" in html
    assert "/admin/" not in html
    assert "<script" not in html  # usable without JavaScript
    assert '<meta name="viewport"' in html


def test_staff_see_the_admin_link(client_for, staff_user):
    html = client_for(staff_user).get("/").content.decode()
    assert 'href="/admin/"' in html


@override_settings(BASE_URL="/jupyter/")
def test_home_links_follow_the_base_url(rf, user):
    from accounts.views import home

    request = rf.get("/jupyter/")
    request.user = user
    html = home(request).content.decode()
    assert 'href="/jupyter/lab"' in html and 'href="/jupyter/tree"' in html

"""API tokens: hashed storage, expiry, revocation, last use; the commands."""

import datetime
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken, AuditEvent
from jserver.errors import BadRequest, NotFound

pytestmark = pytest.mark.django_db


def test_token_is_stored_hashed(user):
    token, raw = tokens.create_token(user, "laptop")
    assert len(raw) == 48 and int(raw, 16) >= 0
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.prefix == raw[:4]
    assert stored.digest == tokens.digest(raw) != raw
    assert raw not in str(ApiToken.objects.values().get(pk=token.pk))


def test_tokens_are_unique(user):
    raws = {tokens.create_token(user, f"t{i}")[1] for i in range(20)}
    assert len(raws) == 20


def test_authenticate_token(user):
    _token, raw = tokens.create_token(user, "t")
    assert tokens.authenticate_token(raw).user == user
    assert tokens.authenticate_token(raw + "0") is None
    assert tokens.authenticate_token("") is None
    assert tokens.authenticate_token("\ud800") is None  # unpaired surrogate from a URL


def test_expired_token_does_not_authenticate(user):
    _token, raw = tokens.create_token(
        user, "t", expires_at=timezone.now() + datetime.timedelta(hours=1)
    )
    assert tokens.authenticate_token(raw) is not None
    ApiToken.objects.update(expires_at=timezone.now())
    assert tokens.authenticate_token(raw) is None


def test_expiry_in_the_past_is_refused(user):
    with pytest.raises(BadRequest):
        tokens.create_token(user, "t", expires_at=timezone.now())


def test_name_is_required_and_bounded(user):
    with pytest.raises(BadRequest):
        tokens.create_token(user, "   ")
    with pytest.raises(BadRequest):
        tokens.create_token(user, "x" * 101)


def test_last_used_is_recorded_at_a_bounded_rate(user):
    token, raw = tokens.create_token(user, "t")
    assert token.last_used is None
    tokens.authenticate_token(raw)
    first = ApiToken.objects.get(pk=token.pk).last_used
    assert first is not None
    tokens.authenticate_token(raw)
    assert ApiToken.objects.get(pk=token.pk).last_used == first
    with override_settings(TOKEN_LAST_USED_RESOLUTION_SECONDS=0):
        tokens.authenticate_token(raw)
    assert ApiToken.objects.get(pk=token.pk).last_used > first


def test_revoke_is_scoped_to_the_owner(user, other_user):
    token, raw = tokens.create_token(other_user, "t")
    with pytest.raises(NotFound):
        tokens.revoke_token(user, token.pk)
    assert tokens.authenticate_token(raw) is not None
    tokens.revoke_token(other_user, token.pk)
    assert tokens.authenticate_token(raw) is None
    assert AuditEvent.objects.filter(action="token_revoked").count() == 1


def test_deleting_the_user_deletes_the_tokens(user):
    _token, raw = tokens.create_token(user, "t")
    user.delete()
    assert tokens.authenticate_token(raw) is None


def test_createtoken_command_prints_a_working_token(user):
    out = io.StringIO()
    call_command("createtoken", "alice", "--name", "ci", stdout=out)
    raw = out.getvalue().strip()
    assert tokens.authenticate_token(raw).name == "ci"


def test_createtoken_command_errors(user):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("createtoken", "nobody")
    with pytest.raises(CommandError, match="must be positive"):
        call_command("createtoken", "alice", "--expires-in-days", "0")
    user.is_active = False
    user.save()
    with pytest.raises(CommandError, match="deactivated"):
        call_command("createtoken", "alice")


def test_ensureadmin_creates_the_first_staff_account_once(db):
    out = io.StringIO()
    call_command("ensureadmin", stdout=out)
    text = out.getvalue()
    username = text.split("username:")[1].split()[0]
    password = text.split("password:")[1].split()[0]
    raw = text.split("API token:")[1].split()[0]
    admin = tokens.authenticate_token(raw).user
    assert admin.username == username == "admin"
    assert admin.is_staff and admin.is_superuser and admin.check_password(password)
    again = io.StringIO()
    call_command("ensureadmin", stdout=again)
    assert again.getvalue() == ""
    assert type(admin).objects.filter(is_staff=True).count() == 1


def test_ensureadmin_avoids_an_existing_username(user):
    user.username = "admin"
    user.save()
    out = io.StringIO()
    call_command("ensureadmin", stdout=out)
    assert "username:  admin-" in out.getvalue()


def warm(raw: str) -> None:
    """Use a token twice: the first use records last_used, the second caches."""
    tokens.authenticate_token(raw)
    tokens.authenticate_token(raw)


@pytest.fixture
def cached(settings):
    settings.TOKEN_CACHE_SECONDS = 30
    tokens._cache.clear()
    yield
    tokens._cache.clear()


def test_without_the_cache_every_lookup_reads_the_database(
    user, settings, django_assert_num_queries
):
    settings.TOKEN_CACHE_SECONDS = 0
    _token, raw = tokens.create_token(user, "t")
    tokens.authenticate_token(raw)
    with django_assert_num_queries(1):
        assert tokens.authenticate_token(raw) is not None


def test_the_cache_answers_from_memory_with_fresh_instances(
    user, cached, django_assert_num_queries
):
    _token, raw = tokens.create_token(user, "t")
    tokens.authenticate_token(raw)  # the first use records last_used, then reads
    first = tokens.authenticate_token(raw)
    with django_assert_num_queries(0):
        second = tokens.authenticate_token(raw)
    assert second.pk == first.pk and second.user == user
    assert second is not first and second.user is not first.user
    assert tokens.authenticate_token(raw + "0") is None  # misses are not cached


def test_revoking_or_deactivating_here_takes_effect_at_once(
    user, cached, django_assert_num_queries
):
    token, raw = tokens.create_token(user, "t")
    warm(raw)
    with django_assert_num_queries(0):
        assert tokens.authenticate_token(raw) is not None  # cached
    tokens.revoke_token(user, token.pk)
    assert tokens.authenticate_token(raw) is None
    _token, raw = tokens.create_token(user, "u")
    warm(raw)
    with django_assert_num_queries(0):
        assert tokens.authenticate_token(raw) is not None  # cached
    user.is_active = False
    user.save()
    assert tokens.authenticate_token(raw) is None


def test_a_change_made_elsewhere_takes_effect_within_the_cache_time(
    user, cached, monkeypatch
):
    _token, raw = tokens.create_token(user, "t")
    tokens.authenticate_token(raw)  # the first use records last_used, then reads
    assert tokens.authenticate_token(raw) is not None
    # As another process would: no signal reaches this one.
    ApiToken.objects.update(expires_at=timezone.now())
    assert tokens.authenticate_token(raw) is not None
    later = tokens.time.monotonic() + 31
    monkeypatch.setattr(tokens.time, "monotonic", lambda: later)
    assert tokens.authenticate_token(raw) is None


def test_a_token_cached_by_default_is_refused_once_revoked(
    user, django_assert_num_queries
):
    tokens._cache.clear()
    token, raw = tokens.create_token(user, "t")
    client = Client(headers={"Authorization": f"token {raw}"})
    assert client.get("/api/me").status_code == 200  # records last_used
    assert client.get("/api/me").status_code == 200  # reads, then remembers
    with django_assert_num_queries(0):
        assert tokens.authenticate_token(raw) is not None  # remembered
    tokens.revoke_token(user, token.pk)
    assert client.get("/api/me").status_code == 403


def test_a_committed_change_is_announced_to_other_processes(
    user, django_capture_on_commit_callbacks
):
    token, _raw = tokens.create_token(user, "t")
    before = tokens._changes_marker()
    with django_capture_on_commit_callbacks(execute=True):
        tokens.revoke_token(user, token.pk)
    after = tokens._changes_marker()
    assert after is not None and after != before
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
    assert tokens._changes_marker() not in {before, after}


def test_a_change_announced_elsewhere_takes_effect_at_the_next_lookup(
    user, cached, django_assert_num_queries
):
    token, raw = tokens.create_token(user, "t")
    warm(raw)
    with django_assert_num_queries(0):
        assert tokens.authenticate_token(raw) is not None  # cached
    # As another process revoking it would: no signal here, then the file.
    ApiToken.objects.filter(pk=token.pk)._raw_delete(ApiToken.objects.db)
    assert tokens.authenticate_token(raw) is not None  # not told yet
    tokens._announce_change()
    assert tokens.authenticate_token(raw) is None


def test_the_changes_file_starts_afresh_past_its_bound(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    markers = set()
    for _ in range(tokens.CHANGES_FILE_MAX_BYTES + 2):
        tokens._announce_change()
        markers.add(tokens._changes_marker())
    assert len(markers) == tokens.CHANGES_FILE_MAX_BYTES + 2
    assert (tmp_path / tokens.CHANGES_FILE).stat().st_size == 3  # 1 + 2 since

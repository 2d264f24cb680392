"""Prepared statements (jserver/sql.py) read and write exactly what the ORM does."""

import datetime

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import ApiToken
from contents.models import ContentsEntry, DeletedItem
from jserver.sql import PreparedSelect, PreparedUpdate
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def fields_of(instance) -> dict:
    return {
        field.attname: getattr(instance, field.attname)
        for field in type(instance)._meta.concrete_fields
    }


def test_select_with_related_reads_what_the_orm_reads(django_assert_num_queries):
    user = make_user("sel", first_name="Ada", staff=True)
    user.last_login = timezone.now()
    user.save()
    token = ApiToken.objects.create(
        user=user,
        name="t",
        prefix="abcd",
        digest="d" * 64,
        last_used=timezone.now() - datetime.timedelta(minutes=3),
        expires_at=timezone.now() + datetime.timedelta(days=1),
    )
    expected = ApiToken.objects.select_related("user").get(pk=token.pk)
    select = PreparedSelect(ApiToken, related="user", where=["digest"])
    with django_assert_num_queries(1):
        found = select.get(digest="d" * 64)
        assert fields_of(found.user) == fields_of(expected.user)
    assert fields_of(found) == fields_of(expected)
    assert found.expires_at.tzinfo is not None and found.user.is_staff is True
    assert not found._state.adding and found._state.db == "default"
    assert select.get(digest="e" * 64) is None


def trashed(owner) -> DeletedItem:
    return DeletedItem.objects.create(
        owner=owner, path="a", type="file", trash_name="x"
    )


def entry(owner, path: str, **values) -> ContentsEntry:
    defaults = {
        "type": "file",
        "size": 1,
        "last_modified": timezone.now(),
        "hash": "0" * 64,
    }
    return ContentsEntry.objects.create(
        owner=owner, path=path, path_digest=path * 4, **{**defaults, **values}
    )


def test_select_reads_only_live_rows_and_the_fields_asked_for():
    owner, other = make_user("o1"), make_user("o2")
    gone = DeletedItem.objects.create(
        owner=owner, path="a", type="file", trash_name="x"
    )
    entry(owner, "a", deleted=gone, size=7)
    live = entry(owner, "a", size=9)
    entry(other, "a", size=11)
    select = PreparedSelect(
        ContentsEntry,
        where=["owner", "path_digest"],
        where_null=["deleted"],
        fields=["size", "hash"],
    )
    found = select.get(owner=owner.pk, path_digest="aaaa")
    assert (found.pk, found.size, found.hash) == (live.pk, 9, "0" * 64)
    assert found.get_deferred_fields() >= {"path", "type", "last_modified"}
    assert select.get(owner=owner.pk, path_digest="bbbb") is None


def test_update_writes_what_queryset_update_writes():
    owner = make_user("u1")
    gone = DeletedItem.objects.create(
        owner=owner, path="a", type="file", trash_name="x"
    )
    deleted = entry(owner, "a", deleted=gone)
    live, twin = entry(owner, "a"), entry(owner, "b")
    moment = timezone.now().replace(microsecond=123456)
    values = {"size": 42, "hash": "f" * 64, "last_modified": moment}
    update = PreparedUpdate(
        ContentsEntry,
        fields=list(values),
        where=["owner", "path_digest"],
        where_null=["deleted"],
    )
    assert update.run(values, owner=owner.pk, path_digest="aaaa") == 1
    ContentsEntry.objects.filter(pk=twin.pk).update(**values)
    live.refresh_from_db()
    twin.refresh_from_db()
    for name in values:
        assert getattr(live, name) == getattr(twin, name) == values[name]
    deleted.refresh_from_db()
    assert deleted.size == 1  # a deleted row is left alone
    assert update.run(values, owner=owner.pk, path_digest="cccc") == 0


@pytest.mark.django_db(transaction=True)
def test_an_update_not_waiting_for_the_disk_writes_the_same_and_counts_rows():
    owner = make_user("u2")
    row = entry(owner, "a")
    update = PreparedUpdate(
        ContentsEntry, fields=["size"], where=["owner", "path_digest"], durable=False
    )
    assert update.run({"size": 7}, owner=owner.pk, path_digest="aaaa") == 1
    assert update.run({"size": 8}, owner=owner.pk, path_digest="cccc") == 0
    row.refresh_from_db()
    assert row.size == 7
    with transaction.atomic():  # inside a transaction: its own commit decides
        assert update.run({"size": 9}, owner=owner.pk, path_digest="aaaa") == 1
    row.refresh_from_db()
    assert row.size == 9
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # the setting ended with its statement
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"

"""``manage.py createtoken USER [--name N]``: print a new API token for a user."""

import datetime

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts import tokens
from jserver.errors import JupyterError


class Command(BaseCommand):
    help = "Create an API token for USER and print it (it is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(
        self, *args, username: str, name: str, expires_in_days: int | None, **options
    ) -> None:
        try:
            user = User.objects.get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}") from None
        if not user.is_active:
            raise CommandError(f"User {username!r} is deactivated")
        expires_at = None
        if expires_in_days is not None:
            if expires_in_days <= 0:
                raise CommandError("--expires-in-days must be positive")
            expires_at = timezone.now() + datetime.timedelta(days=expires_in_days)
        try:
            _token, raw = tokens.create_token(user, name, expires_at=expires_at)
        except JupyterError as error:
            raise CommandError(error.message) from None
        self.stdout.write(raw)

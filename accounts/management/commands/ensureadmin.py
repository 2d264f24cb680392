"""``manage.py ensureadmin``: create the first staff account if there is none.

Prints the username, a generated password and an API token once; does nothing
when a staff account exists.
"""

import secrets

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts import audit, tokens


class Command(BaseCommand):
    help = (
        "Create the first staff account (printing its credentials once) if none exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options) -> None:
        with transaction.atomic():
            if User.objects.filter(is_staff=True).exists():
                return
            if User.objects.filter(username=username).exists():
                username = f"{username}-{secrets.token_hex(2)}"
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, password=password)
            audit.record("user_created", target=f"user {username}", how="ensureadmin")
            _token, raw = tokens.create_token(user, "first token")
        self.stdout.write(
            "\n".join(
                [
                    "Created the first staff account. These are shown only once:",
                    f"  username:  {username}",
                    f"  password:  {password}",
                    f"  API token: {raw}",
                    "",
                ]
            )
        )

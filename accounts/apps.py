from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Users, login and logout, API tokens, identity, audit trail."""

    name = "accounts"
    verbose_name = "Accounts"

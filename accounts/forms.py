"""Forms of the account pages."""

from django import forms

from accounts.tokens import NAME_MAX_LENGTH


class TokenForm(forms.Form):
    """Create an API token: a name, and an optional lifetime."""

    name = forms.CharField(
        max_length=NAME_MAX_LENGTH,
        help_text="What the token is for, e.g. “VS Code on my laptop”.",
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        choices=[
            ("", "Never"),
            ("7", "In 7 days"),
            ("30", "In 30 days"),
            ("90", "In 90 days"),
            ("365", "In a year"),
        ],
        coerce=int,
        empty_value=None,
        required=False,
    )

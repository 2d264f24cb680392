"""Plain factory functions for test objects."""

import itertools

from django.contrib.auth.models import User

from accounts import tokens

PASSWORD = "correct horse battery staple"
_numbers = itertools.count(1)


def make_user(username: str | None = None, *, staff: bool = False, **fields) -> User:
    """Create an active user whose password is ``PASSWORD``.

    ``staff=True`` makes an administrator (staff with every permission).
    """
    username = username or f"user{next(_numbers)}"
    return User.objects.create_user(
        username=username,
        password=PASSWORD,
        is_staff=staff,
        is_superuser=staff,
        **fields,
    )


def make_token(user: User, name: str = "test", **kwargs) -> str:
    """Create an API token for ``user`` and return its raw value."""
    _token, raw = tokens.create_token(user, name, **kwargs)
    return raw


def make_notebook(cells: int = 2, *, outputs: bool = True, trusted: bool | None = None):
    """Return a valid nbformat 4.5 notebook (``nbformat.v4``) with code cells.

    With ``outputs`` each code cell has a stream and an HTML display (rich
    output, which makes a cell untrusted unless it is marked trusted).
    ``trusted`` sets every code cell's ``metadata.trusted`` when given.
    """
    from nbformat import v4

    notebook = v4.new_notebook(metadata={"language_info": {"name": "python"}})
    for number in range(cells):
        cell = v4.new_code_cell(f"x = {number}\nprint(x)", execution_count=number + 1)
        if outputs:
            cell.outputs = [
                v4.new_output("stream", name="stdout", text=f"{number}\n"),
                v4.new_output("display_data", data={"text/html": f"<b>{number}</b>"}),
            ]
        if trusted is not None:
            cell.metadata["trusted"] = trusted
        notebook.cells.append(cell)
    notebook.cells.append(v4.new_markdown_cell("# The end"))
    return notebook

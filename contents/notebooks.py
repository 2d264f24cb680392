"""Notebooks as jupyter_server reads and saves them, through nbformat.

Reading: any nbformat version is returned as v4 (upgraded by nbformat), cell
sources joined into one string, cell ids added where nbformat 4.5 requires
them, validated (a problem is reported in the model's ``message``, as
jupyter_server does, not refused), and every code cell's ``metadata.trusted``
set from the owner's trust (below).

Saving: the cells' ``trusted`` flags decide whether the saved notebook is
trusted and never reach the disk; notebooks older than 4.5 are upgraded to
4.5, missing or duplicate cell ids are added or replaced, validation problems
are reported (the notebook is still saved, as jupyter_server does), and the
file is written exactly as nbformat writes it (sorted keys, one-space indent,
lines split).

Trust: jupyter_server signs an HMAC of the notebook's content in a signature
database of the server (one per single-user server). Here the signature store
is per owner, in the database (``TrustedNotebook``), and a signature is the
sha256 of the notebook file's exact bytes: the digest already computed for
``hash`` and the index, so checking trust costs one indexed query. One user
trusting a notebook never makes it trusted for another user, and a file
changed by anything else (a kernel, an upload) is untrusted until its owner
runs or trusts it again, as with jupyter_server.
"""

import json
from typing import Any

import nbformat
from django.contrib.auth.models import User
from nbformat import reader
from nbformat.corpus.words import generate_corpus_id
from nbformat.v4 import convert as v4_convert
from nbformat.v4 import nbjson

from contents.models import TrustedNotebook
from jserver.errors import BadRequest

# Output types whose rich data makes a cell untrusted (nbformat.sign).
UNSAFE_OUTPUT_TYPES = frozenset({"execute_result", "display_data"})
SAFE_OUTPUT_KEYS = frozenset({"output_type", "execution_count", "metadata"})
# Signatures kept per owner, the oldest forgotten first (nbformat's store culls
# its signature database too).
SIGNATURES_KEPT = 10_000


def validation_message(error: nbformat.ValidationError) -> str:
    """Return the ``message`` jupyter_server adds for an invalid notebook."""
    instance = json.dumps(error.instance, indent=1, default=lambda obj: "<UNKNOWN>")
    return f"Notebook validation failed: {error}:\n{instance}"


def _code_cells(nb: Any) -> list:
    return [cell for cell in nb.cells if cell.get("cell_type") == "code"]


def _normalise_ids(nb: Any) -> None:
    """Give every cell an id, unique in the notebook (nbformat >= 4.5)."""
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        return
    seen: set[str] = set()
    for cell in nb.cells:
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or cell_id in seen:
            cell_id = generate_corpus_id()
            while cell_id in seen:
                cell_id = generate_corpus_id()
            cell["id"] = cell_id
        seen.add(cell_id)


def _validate(nb: Any) -> str | None:
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        return validation_message(error)
    return None


def parse(data: bytes, path: str) -> tuple[Any, str | None]:
    """Read a notebook file's bytes; return it as v4 and a validation message.

    Raises ``BadRequest`` (jupyter_server's texts) for bytes that are not
    UTF-8 or not a notebook at all.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"/{path} is not UTF-8 encoded", reason="bad format") from None
    try:
        nb = reader.reads(text)
        if nb.nbformat != nbformat.current_nbformat:
            nb = nbformat.convert(nb, nbformat.current_nbformat)
        _normalise_ids(nb)
    except Exception as error:
        raise BadRequest(f"Unreadable Notebook: /{path} {error!r}") from None
    return nb, _validate(nb)


def mark_trusted(nb: Any, trusted: bool) -> None:
    """Set ``metadata.trusted`` on every code cell (nbformat's ``mark_cells``)."""
    for cell in _code_cells(nb):
        cell.setdefault("metadata", {})["trusted"] = trusted


def _cell_trusted(cell: Any) -> bool:
    """Return whether a cell is trusted, removing its ``trusted`` flag.

    Trusted: explicitly, or without rich output (nbformat's ``_check_cell``).
    """
    if cell["metadata"].pop("trusted", False):
        return True
    for output in cell["outputs"]:
        if output["output_type"] in UNSAFE_OUTPUT_TYPES and (
            set(output) - SAFE_OUTPUT_KEYS
        ):
            return False
    return True


def serialise(content: Any) -> tuple[bytes, bool, str | None]:
    """Turn a notebook model's ``content`` into the bytes to save.

    Return the bytes, whether every code cell was trusted (the notebook is then
    signed once saved) and the validation message, if any. Any other problem
    raises (the caller answers jupyter_server's 500).
    """
    nb = nbformat.from_dict(content)
    major = nb.nbformat
    trusted = major >= 3
    # Every cell's flag is removed, so do not stop at the first untrusted one.
    for cell in _code_cells(nb):
        if not _cell_trusted(cell):
            trusted = False
    if major != nbformat.current_nbformat:
        nb = nbformat.convert(nb, nbformat.current_nbformat)
    elif nb.nbformat_minor < nbformat.current_nbformat_minor:
        nb = v4_convert.upgrade(nb, from_version=major, from_minor=nb.nbformat_minor)
    _normalise_ids(nb)
    message = _validate(nb)
    text = nbjson.writes(nb)
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8"), trusted, message


def is_trusted(owner: User, digest: str) -> bool:
    """Return whether ``owner`` trusts the notebook whose bytes hash to ``digest``."""
    return TrustedNotebook.objects.filter(owner=owner, digest=digest).exists()


def sign(owner: User, digest: str) -> None:
    """Record that ``owner`` trusts the notebook whose bytes hash to ``digest``."""
    _, created = TrustedNotebook.objects.get_or_create(owner=owner, digest=digest)
    if not created:
        return
    oldest_kept = list(
        TrustedNotebook.objects.filter(owner=owner)
        .order_by("-pk")
        .values_list("pk", flat=True)[SIGNATURES_KEPT - 1 : SIGNATURES_KEPT]
    )
    if oldest_kept:
        TrustedNotebook.objects.filter(owner=owner, pk__lt=oldest_kept[0]).delete()

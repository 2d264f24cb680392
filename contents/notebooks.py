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
import math
from typing import Any

import nbformat
from django.contrib.auth.models import User
from nbformat import reader
from nbformat.corpus.words import generate_corpus_id
from nbformat.v4 import convert as v4_convert

from contents.models import TrustedNotebook
from jserver.errors import BadRequest

# Output types whose rich data makes a cell untrusted (nbformat.sign).
UNSAFE_OUTPUT_TYPES = frozenset({"execute_result", "display_data"})
SAFE_OUTPUT_KEYS = frozenset({"output_type", "execution_count", "metadata"})
# Signatures kept per owner, the oldest forgotten first (nbformat's store culls
# its signature database too).
SIGNATURES_KEPT = 10_000
# ... checked every this many signatures (of anyone), not on each save.
CULL_EVERY = 100
# Mime types saved as lists of lines besides text/* (nbformat v4's writer).
SPLIT_MIMES = frozenset({"application/javascript", "image/svg+xml"})
CURRENT = (nbformat.current_nbformat, nbformat.current_nbformat_minor)


def validation_message(error: nbformat.ValidationError) -> str:
    """Return the ``message`` jupyter_server adds for an invalid notebook."""
    instance = json.dumps(error.instance, indent=1, default=lambda obj: "<UNKNOWN>")
    return f"Notebook validation failed: {error}:\n{instance}"


def _code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb["cells"] if cell.get("cell_type") == "code"]


def _normalise_ids(nb: dict) -> None:
    """Give every cell an id, unique in the notebook (nbformat >= 4.5)."""
    if (nb["nbformat"], nb["nbformat_minor"]) < (4, 5):
        return
    seen: set[str] = set()
    for cell in nb["cells"]:
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or cell_id in seen:
            cell_id = generate_corpus_id()
            while cell_id in seen:
                cell_id = generate_corpus_id()
            cell["id"] = cell_id
        seen.add(cell_id)


def _validate(nb: dict) -> str | None:
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        return validation_message(error)
    return None


# ---- the file format's line splitting, on plain dicts ----------


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _rejoin_bundle(bundle: dict) -> None:
    for key, value in bundle.items():
        if (
            isinstance(value, list)
            and not _is_json_mime(key)
            and all(isinstance(line, str) for line in value)
        ):
            bundle[key] = "".join(value)


def _rejoin_lines(nb: dict) -> None:
    """Join the lists of lines a v4 file stores into strings (in place)."""
    for cell in nb["cells"]:
        source = cell.get("source")
        if isinstance(source, list):
            cell["source"] = "".join(source)
        for attachment in cell.get("attachments", {}).values():
            _rejoin_bundle(attachment)
        if cell.get("cell_type") == "code":
            for output in cell.get("outputs", []):
                kind = output.get("output_type", "")
                if kind in UNSAFE_OUTPUT_TYPES:
                    _rejoin_bundle(output.get("data", {}))
                elif kind and isinstance(output.get("text", ""), list):
                    output["text"] = "".join(output["text"])


def _split_bundle(bundle: dict) -> None:
    for key, value in bundle.items():
        if isinstance(value, str) and (key.startswith("text/") or key in SPLIT_MIMES):
            bundle[key] = value.splitlines(True)


def _split_lines(nb: dict) -> None:
    """Split multi-line strings into lists of lines, as v4 files store them."""
    for cell in nb["cells"]:
        source = cell.get("source")
        if isinstance(source, str):
            cell["source"] = source.splitlines(True)
        for attachment in cell.get("attachments", {}).values():
            _split_bundle(attachment)
        if cell["cell_type"] == "code":
            for output in cell["outputs"]:
                kind = output["output_type"]
                if kind in UNSAFE_OUTPUT_TYPES:
                    _split_bundle(output.get("data", {}))
                elif kind == "stream" and isinstance(output["text"], str):
                    output["text"] = output["text"].splitlines(True)


def _strip_transient(nb: dict) -> None:
    """Drop what never belongs in a file (trust flags, conversion marks)."""
    metadata = nb["metadata"]
    for key in ("orig_nbformat", "orig_nbformat_minor", "signature"):
        metadata.pop(key, None)
    for cell in nb["cells"]:
        cell["metadata"].pop("trusted", None)


# ---- writing JSON exactly as nbformat does, faster ----------

_encode_string = json.encoder.encode_basestring  # the C encoder when available


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


class _NotPlainJSON(Exception):
    """A value the fast writer does not handle (the standard encoder does)."""


def _encode(value: Any, out: list[str], newline: str) -> None:
    if isinstance(value, str):
        out.append(_encode_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + " "
        separator = "{" + inner
        keys = list(value)
        if not all(isinstance(key, str) for key in keys):
            raise _NotPlainJSON
        for key in sorted(keys):
            out.append(separator)
            out.append(_encode_string(key))
            out.append(": ")
            _encode(value[key], out, inner)
            separator = "," + inner
        out.append(newline + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = newline + " "
        if all(type(item) is str for item in value):
            out.append("[" + inner)
            out.append(("," + inner).join(map(_encode_string, value)))
        else:
            separator = "[" + inner
            for item in value:
                out.append(separator)
                _encode(item, out, inner)
                separator = "," + inner
        out.append(newline + "]")
    else:
        raise _NotPlainJSON


def dumps(nb: dict) -> str:
    """Return ``nb`` as nbformat writes it: sorted keys, one-space indent, UTF-8.

    Byte for byte ``json.dumps(nb, sort_keys=True, indent=1,
    ensure_ascii=False, separators=(",", ": "))``, without the standard
    encoder's per-value overhead (notebooks are mostly lists of lines).
    """
    out: list[str] = []
    try:
        _encode(nb, out, "\n")
    except _NotPlainJSON:
        return json.dumps(
            nb, sort_keys=True, indent=1, ensure_ascii=False, separators=(",", ": ")
        )
    return "".join(out)


# ---- reading and saving ----------


def parse(data: bytes, path: str) -> tuple[dict, str | None]:
    """Read a notebook file's bytes; return it as v4 and a validation message.

    Raises ``BadRequest`` (jupyter_server's texts) for bytes that are not
    UTF-8 or not a notebook at all.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"/{path} is not UTF-8 encoded", reason="bad format") from None
    try:
        nb = reader.parse_json(text)
        if isinstance(nb, dict) and reader.get_version(nb) == CURRENT:
            _rejoin_lines(nb)
            _strip_transient(nb)
        else:  # other versions (and oddities): nbformat's own reader
            nb = reader.reads(text)
            if nb.nbformat != nbformat.current_nbformat:
                nb = nbformat.convert(nb, nbformat.current_nbformat)
        _normalise_ids(nb)
    except Exception as error:
        raise BadRequest(f"Unreadable Notebook: /{path} {error!r}") from None
    return nb, _validate(nb)


def mark_trusted(nb: dict, trusted: bool) -> None:
    """Set ``metadata.trusted`` on every code cell (nbformat's ``mark_cells``)."""
    for cell in _code_cells(nb):
        cell.setdefault("metadata", {})["trusted"] = trusted


def _cell_trusted(cell: dict) -> bool:
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


def _attribute(nb: Any, name: str) -> Any:
    try:
        return nb[name]
    except (KeyError, TypeError):
        raise AttributeError(name) from None


def serialise(content: Any) -> tuple[bytes, bool, str | None]:
    """Turn a notebook model's ``content`` into the bytes to save.

    Return the bytes, whether every code cell was trusted (the notebook is then
    signed once saved) and the validation message, if any. Any other problem
    raises (the caller answers jupyter_server's 500). ``content`` is consumed.
    """
    if not isinstance(content, dict):
        raise AttributeError(
            f"'{type(content).__name__}' object has no attribute 'nbformat'"
        )
    nb = content
    major = _attribute(nb, "nbformat")
    trusted = major >= 3
    # Every cell's flag is removed, so do not stop at the first untrusted one.
    for cell in _code_cells(nb):
        if not _cell_trusted(cell):
            trusted = False
    version = (major, _attribute(nb, "nbformat_minor"))
    if version != CURRENT:
        nb = nbformat.from_dict(nb)
        if major != nbformat.current_nbformat:
            nb = nbformat.convert(nb, nbformat.current_nbformat)
        else:
            nb = v4_convert.upgrade(nb, from_version=major, from_minor=version[1])
    _normalise_ids(nb)
    message = _validate(nb)
    _strip_transient(nb)
    _split_lines(nb)
    text = dumps(nb)
    return (text + "\n").encode("utf-8"), trusted, message


def is_trusted(owner: User, digest: str) -> bool:
    """Return whether ``owner`` trusts the notebook whose bytes hash to ``digest``."""
    return TrustedNotebook.objects.filter(owner=owner, digest=digest).exists()


def sign(owner: User, digest: str) -> None:
    """Record that ``owner`` trusts the notebook whose bytes hash to ``digest``."""
    row, created = TrustedNotebook.objects.get_or_create(owner=owner, digest=digest)
    if created and row.pk % CULL_EVERY == 0:
        oldest_kept = list(
            TrustedNotebook.objects.filter(owner=owner)
            .order_by("-pk")
            .values_list("pk", flat=True)[SIGNATURES_KEPT - 1 : SIGNATURES_KEPT]
        )
        if oldest_kept:
            TrustedNotebook.objects.filter(owner=owner, pk__lt=oldest_kept[0]).delete()

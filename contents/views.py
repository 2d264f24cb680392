"""``/api/contents``, its checkpoints and trust, ``/api/notebooks`` and ``/files``."""

import datetime
import email.utils
import mimetypes
import os
import re
from collections.abc import AsyncIterator
from typing import BinaryIO
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils.http import http_date
from django.views.decorators.clickjacking import xframe_options_sameorigin

from contents import manager
from jserver.api import (
    api_view,
    cross_site_refusal,
    download_user,
    json_body,
    json_response,
)
from jserver.errors import BadRequest, NotFound

# /files: user bytes run, if at all, in a sandbox of their own origin.
FILES_CSP = "frame-ancestors 'self'; sandbox allow-scripts"
# /files answers smaller files from memory and streams larger ones.
FILES_INLINE_BYTES = 1024 * 1024
FILES_BLOCK_BYTES = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def url_escape(path: str) -> str:
    """Percent-encode each segment of a path (jupyter_server's ``url_escape``)."""
    return "/".join(quote(part) for part in path.split("/"))


def contents_url(path: str) -> str:
    """Return the ``Location`` of a model at ``path``."""
    return f"{settings.BASE_URL}api/contents/{url_escape(path.strip('/'))}"


def _model_response(
    model: manager.ContentsModel, *, status: int = 200, location: bool = True
) -> HttpResponse:
    headers = {}
    if location:
        headers["Location"] = contents_url(model["path"])
    modified = datetime.datetime.fromisoformat(model["last_modified"])
    headers["Last-Modified"] = http_date(modified.timestamp())
    return json_response(model, status=status, headers=headers)


def _query_flag(request: HttpRequest, name: str, default: str, message: str) -> bool:
    value = request.GET.get(name, default)
    if value not in {"0", "1"}:
        raise BadRequest(message.format(value=value))
    return value == "1"


@api_view("GET", "PUT", "POST", "PATCH", "DELETE")
def contents(request: HttpRequest, user: User, path: str = "") -> HttpResponse:
    """Get, save, create, rename or delete a file, notebook or directory."""
    if request.method == "GET":
        return _get(request, user, path)
    if request.method == "PUT":
        model, created = manager.put(path, json_body(request), owner=user)
        return _model_response(model, status=201 if created else 200)
    if request.method == "POST":
        return _model_response(
            manager.post(path, json_body(request), owner=user), status=201
        )
    if request.method == "PATCH":
        body = json_body(request)
        if body is None:
            raise BadRequest("JSON body missing")
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object")
        return _model_response(manager.update(body, path, owner=user))
    manager.delete(path, owner=user)
    return HttpResponse(status=204)


def _get(request: HttpRequest, user: User, path: str) -> HttpResponse:
    kind = request.GET.get("type")
    if kind not in {None, "directory", "file", "notebook"}:
        kind = "file"
    format = request.GET.get("format")
    if format not in {None, "text", "base64"}:
        raise BadRequest(f"Format {format!r} is invalid")
    content = _query_flag(request, "content", "1", "Content {value!r} is invalid")
    require_hash = _query_flag(
        request,
        "hash",
        "0",
        "Hash argument {value!r} is invalid. It must be '0' or '1'.",
    )
    try:
        model = manager.get(
            path,
            owner=user,
            type=kind,
            format=format,
            content=content,
            require_hash=require_hash,
        )
    except manager.Missing:
        # jupyter_server answers this 404 with a bare string (not JSON).
        return HttpResponse(
            f"file or directory {path!r} does not exist",
            status=404,
            content_type="application/json",
        )
    return _model_response(model, location=False)


@api_view("GET", "POST")
def checkpoints(request: HttpRequest, user: User, path: str) -> HttpResponse:
    """List a file's checkpoints, or take one."""
    if request.method == "POST":
        checkpoint = manager.create_checkpoint(path, owner=user)
        location = f"{contents_url(path)}/checkpoints/{quote(checkpoint['id'])}"
        return json_response(checkpoint, status=201, headers={"Location": location})
    return json_response(manager.list_checkpoints(path, owner=user))


@api_view("POST", "DELETE")
def checkpoint(
    request: HttpRequest, user: User, path: str, checkpoint_id: str
) -> HttpResponse:
    """Restore a checkpoint (itself undoable), or delete it."""
    if request.method == "POST":
        manager.restore_checkpoint(checkpoint_id, path, owner=user)
    else:
        manager.delete_checkpoint(checkpoint_id, path, owner=user)
    return HttpResponse(status=204)


@api_view("POST")
def trust(request: HttpRequest, user: User, path: str) -> HttpResponse:
    """Trust a notebook's current content."""
    manager.trust_notebook(path, owner=user)
    return HttpResponse(status=201)


def notebooks_redirect(request: HttpRequest, path: str) -> HttpResponse:
    """``/api/notebooks/<path>``, deprecated: redirect to ``/api/contents``."""
    return HttpResponseRedirect(contents_url(path))


# ---- /files ----------


def _content_type(name: str) -> str:
    """Return the Content-Type jupyter_server's file handler sends for ``name``."""
    if name.endswith(".ipynb"):
        return "application/x-ipynb+json"
    mimetype, encoding = mimetypes.guess_type(name)
    if mimetype == "text/plain":
        return "text/plain; charset=UTF-8"
    if encoding == "gzip":
        return "application/gzip"
    if encoding is not None or mimetype is None:
        return "application/octet-stream"
    return mimetype


def _byte_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """Parse ``Range: bytes=a-b``: ``None`` ignores it, ``False`` is unsatisfiable."""
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(size - int(last), 0), size
    else:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        return False
    return start, end


async def _stream(handle: BinaryIO, start: int, end: int) -> AsyncIterator[bytes]:
    try:
        await sync_to_async(handle.seek, thread_sensitive=False)(start)
        remaining = end - start
        while remaining > 0:
            block = await sync_to_async(handle.read, thread_sensitive=False)(
                min(FILES_BLOCK_BYTES, remaining)
            )
            if not block:
                break
            remaining -= len(block)
            yield block
    finally:
        handle.close()


@xframe_options_sameorigin
def files(request: HttpRequest, path: str) -> HttpResponse:
    """Serve one of the user's files as it is (``/files/<path>``).

    Pages, not API: an unauthenticated browser is sent to the login page.
    User bytes get a sandboxing CSP and ``nosniff``, so HTML or SVG a user
    uploads can never run with the viewer's session.
    """
    if request.method not in {"GET", "HEAD"}:
        return HttpResponseNotAllowed(["GET", "HEAD"])
    user, by_token = download_user(request)
    if user is None:
        return redirect_to_login(request.get_full_path())
    if not by_token and (refusal := cross_site_refusal(request)):
        return _files_error(request, 403, refusal)
    try:
        handle, st, api_path = manager.open_file(path, owner=user)
    except NotFound:
        return _files_error(request, 404)
    except IsADirectoryError:
        return _files_error(request, 403, f"{path} is not a file")
    except PermissionError:
        return _files_error(request, 403, f"Permission denied: {path}")
    try:
        response = _file_response(request, handle, st, api_path)
    except BaseException:
        handle.close()
        raise
    if not isinstance(response, StreamingHttpResponse):
        handle.close()
    name = api_path.rsplit("/", 1)[-1]
    if name.endswith(".ipynb") or request.GET.get("download"):
        response["Content-Disposition"] = f"attachment; filename*=utf-8''{quote(name)}"
    response["Content-Security-Policy"] = FILES_CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-cache"
    response["Last-Modified"] = http_date(st.st_mtime)
    response["Accept-Ranges"] = "bytes"
    return response


def _file_response(
    request: HttpRequest, handle: BinaryIO, st: os.stat_result, path: str
) -> HttpResponse:
    content_type = _content_type(path.rsplit("/", 1)[-1])
    since = request.headers.get("If-Modified-Since")
    if since:
        try:
            moment = email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError, IndexError):
            moment = None
        if moment is not None and int(st.st_mtime) <= moment:
            return HttpResponse(status=304)
    size = st.st_size
    start, end, status = 0, size, 200
    if header := request.headers.get("Range"):
        found = _byte_range(header, size)
        if found is False:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        if found is not None:
            start, end = found
            status = 206
    if request.method == "HEAD":
        response = HttpResponse(status=status, content_type=content_type)
    elif end - start <= FILES_INLINE_BYTES:
        handle.seek(start)
        response = HttpResponse(
            handle.read(end - start), status=status, content_type=content_type
        )
    else:
        response = StreamingHttpResponse(
            _stream(handle, start, end), status=status, content_type=content_type
        )
    response["Content-Length"] = str(end - start)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return response


def _files_error(request: HttpRequest, status: int, message: str = "") -> HttpResponse:
    if status == 404:
        response = render(request, "404.html", status=404)
    else:
        response = HttpResponseForbidden(message, content_type="text/plain")
    response["Content-Security-Policy"] = FILES_CSP
    return response

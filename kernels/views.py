"""``/api/kernels`` and ``/api/sessions``, as jupyter_server 2.x answers them.

Async views: they run on the server's event loop, where the kernel host and
its ZMQ sockets live. Every lookup is scoped to the requesting user, so another
user's kernel or session is a 404 like one that does not exist.
"""

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse

from jserver.api import api_view, json_body, json_response
from jserver.errors import BadRequest, JupyterError
from kernels import manager, sessions

# Kernel environment variables a client may set (jupyter_server's gateway
# client sends KERNEL_USERNAME, KERNEL_WORKING_DIR, ...).
CLIENT_ENV_PREFIX = "KERNEL_"


def _location(kind: str, key: str) -> str:
    return f"{settings.BASE_URL}api/{kind}/{key}"


def _object(body, message: str = "No JSON data provided") -> dict:
    if body is None:
        raise BadRequest(message)
    if not isinstance(body, dict):
        raise BadRequest("The JSON body must be an object")
    return body


def _string(body: dict, key: str, *, optional: bool = True) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid value for {key!r}: a string is required")
    return value


def _client_env(body: dict) -> dict[str, str]:
    env = body.get("env")
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise BadRequest("Invalid value for 'env': an object is required")
    return {
        key: value
        for key, value in env.items()
        if isinstance(key, str)
        and key.startswith(CLIENT_ENV_PREFIX)
        and isinstance(value, str)
        and "\0" not in key + value
    }


@api_view("GET", "POST")
async def kernels_root(request: HttpRequest, user: User) -> HttpResponse:
    host = manager.host()
    if request.method == "GET":
        return json_response([kernel.model() for kernel in host.owned(user)])
    body = json_body(request)
    body = {} if body is None else _object(body)
    try:
        kernel = await host.start(
            user,
            name=_string(body, "name"),
            path=_string(body, "path"),
            kernel_id=_string(body, "kernel_id"),
            env=_client_env(body),
        )
    except manager.NoSuchKernelSpec as exc:
        raise JupyterError(f"No such kernel named {_string(body, 'name')}") from exc
    return json_response(
        kernel.model(),
        status=201,
        headers={"Location": _location("kernels", kernel.id)},
    )


@api_view("GET", "DELETE")
async def kernel_detail(
    request: HttpRequest, user: User, kernel_id: str
) -> HttpResponse:
    host = manager.host()
    kernel = host.get(user, kernel_id)
    if request.method == "GET":
        return json_response(kernel.model())
    await host.shutdown(kernel, actor=user)
    return HttpResponse(status=204)


@api_view("POST")
async def kernel_action(
    request: HttpRequest, user: User, kernel_id: str, action: str
) -> HttpResponse:
    kernel = manager.host().get(user, kernel_id)
    if action == "interrupt":
        await kernel.interrupt()
        return HttpResponse(status=204)
    try:
        await kernel.restart()
    except JupyterError as exc:
        if exc.status == 404:
            raise
        raise JupyterError("Exception restarting kernel") from exc
    return json_response(kernel.model())


@api_view("GET", "POST")
async def sessions_root(request: HttpRequest, user: User) -> HttpResponse:
    if request.method == "GET":
        return json_response(await sessions.list_sessions(user))
    body = _object(json_body(request))
    notebook = body.get("notebook")
    if isinstance(notebook, dict):  # the pre-5.0 body
        body["type"] = "notebook"
        if "name" in notebook:
            body["path"] = notebook["name"]
        elif "path" in notebook:
            body["path"] = notebook["path"]
    for key in ("path", "type"):
        if key not in body:
            raise BadRequest(f"Missing field in JSON data: {key}")
    kernel = body.get("kernel") or {}
    if not isinstance(kernel, dict):
        raise BadRequest("Invalid value for 'kernel': an object is required")
    model = await sessions.create_session(
        user,
        path=_string(body, "path", optional=False),
        type=_string(body, "type", optional=False),
        name=_string(body, "name"),
        kernel_name=_string(kernel, "name"),
        kernel_id=_string(kernel, "id"),
    )
    return json_response(
        model, status=201, headers={"Location": _location("sessions", model["id"])}
    )


@api_view("GET", "PATCH", "DELETE")
async def session_detail(
    request: HttpRequest, user: User, session_id: str
) -> HttpResponse:
    if request.method == "GET":
        return json_response(await sessions.get_session(user, session_id))
    if request.method == "DELETE":
        await sessions.delete_session(user, session_id)
        return HttpResponse(status=204)
    body = _object(json_body(request))
    notebook = body.get("notebook")
    if isinstance(notebook, dict) and "path" in notebook:
        body["path"], body["type"] = notebook["path"], "notebook"
    for key in ("path", "type"):
        if key in body:
            _string(body, key, optional=False)
    if "name" in body:
        _string(body, "name")
    if "kernel" in body and not isinstance(body["kernel"], dict):
        raise BadRequest("Invalid value for 'kernel': an object is required")
    return json_response(await sessions.update_session(user, session_id, body))

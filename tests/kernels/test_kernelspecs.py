"""Kernelspecs: discovery from installation paths only, the API and resources.

Expected models were taken from jupyter_server 2.21.1 (with jupyter_client 8.10
and ipykernel 7.4) serving the same kernelspec directories under
``--ServerApp.base_url=/jup/``, queried with curl.
"""

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils.http import http_date
from ipykernel.kernelspec import RESOURCES

from kernels import specs

VENV_KERNELS = Path(sys.prefix) / "share" / "jupyter" / "kernels"
IPYKERNEL_RESOURCES = Path(os.path.realpath(RESOURCES))

# jupyter_server's model of the python3 kernelspec ipykernel installs in an
# environment (argv[0] is "python": jupyter_client runs sys.executable for it).
PYTHON3_SPEC = {
    "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "env": {},
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "interrupt_mode": "signal",
    "metadata": {"debugger": True, "supported_encryption": ["curve"]},
    "kernel_protocol_version": "5.5",
}
MYKERN_JSON = {
    "argv": ["/bin/true", "{connection_file}", "{resource_dir}", "{prefix}", "{x}"],
    "display_name": "My Kern",
    "language": "foo",
    "env": {"A": "1"},
    "extra_key": 5,  # unknown keys are dropped from the model, as jupyter_client
    "mimetype": "text/x-foo",
}
MYKERN_FILES = {
    "kernel.js": b"console.log(1)\n",
    "kernel.css": b"body{}\n",
    "logo-64x64.png": b"\x89PNG\r\n\x1a\nnot really",
    "logo-svg.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "logo-noext": b"x",
    "other.txt": b"plain\n",
}


def write_spec(
    base: Path, dirname: str, data: object, files: dict[str, bytes] | None = None
) -> Path:
    """Install a kernelspec directory ``base/dirname`` (mode 0755, files 0644)."""
    path = base / dirname
    path.mkdir(parents=True, exist_ok=True)
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    (path / "kernel.json").write_bytes(raw)
    for name, content in (files or {}).items():
        (path / name).write_bytes(content)
    return path


@pytest.fixture
def kernels_dir(tmp_path, settings):
    """An empty kernelspec directory, the only one searched."""
    base = tmp_path / "kernels"
    base.mkdir()
    settings.KERNELSPEC_DIRS = [base]
    specs.clear_cache()
    yield base
    specs.clear_cache()


@pytest.fixture
def installed(kernels_dir, settings):
    """``mykern`` (with resources) in ``kernels_dir``, then the venv's python3."""
    write_spec(kernels_dir, "MyKern", MYKERN_JSON, MYKERN_FILES)
    settings.KERNELSPEC_DIRS = [kernels_dir, VENV_KERNELS]
    specs.clear_cache()
    return kernels_dir


def names() -> set[str]:
    specs.clear_cache()
    return set(specs.find_specs())


# ---- the API ------------------------------------------------------------------


def test_listing_is_jupyter_servers_model(installed, token_client):
    response = token_client.get("/api/kernelspecs")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "default": "python3",
        "kernelspecs": {
            "mykern": {
                "name": "mykern",
                "spec": {
                    "argv": MYKERN_JSON["argv"],
                    "env": {"A": "1"},
                    "display_name": "My Kern",
                    "language": "foo",
                    "interrupt_mode": "signal",
                    "metadata": {},
                    "kernel_protocol_version": "",
                },
                "resources": {
                    "kernel.js": "/kernelspecs/mykern/kernel.js",
                    "kernel.css": "/kernelspecs/mykern/kernel.css",
                    "logo-64x64": "/kernelspecs/mykern/logo-64x64.png",
                    "logo-svg": "/kernelspecs/mykern/logo-svg.svg",
                    "logo-noext": "/kernelspecs/mykern/logo-noext",
                },
            },
            "python3": {
                "name": "python3",
                "spec": PYTHON3_SPEC,
                "resources": {
                    "logo-32x32": "/kernelspecs/python3/logo-32x32.png",
                    "logo-64x64": "/kernelspecs/python3/logo-64x64.png",
                    "logo-svg": "/kernelspecs/python3/logo-svg.svg",
                },
            },
        },
    }


def test_minimal_kernel_json_gets_jupyter_clients_defaults(kernels_dir, token_client):
    write_spec(kernels_dir, "minimal", {"argv": ["x"]})
    response = token_client.get("/api/kernelspecs/minimal")
    assert response.status_code == 200
    assert response.json() == {
        "name": "minimal",
        "spec": {
            "argv": ["x"],
            "env": {},
            "display_name": "",
            "language": "",
            "interrupt_mode": "signal",
            "metadata": {},
            "kernel_protocol_version": "",
        },
        "resources": {},
    }


def test_one_kernelspec_by_name_any_case_or_escaped(installed, token_client):
    listed = token_client.get("/api/kernelspecs").json()["kernelspecs"]["mykern"]
    for url in (
        "/api/kernelspecs/mykern",
        "/api/kernelspecs/MyKern",
        "/api/kernelspecs/my%256bern",  # unescaped again, as jupyter_server
    ):
        response = token_client.get(url)
        assert response.status_code == 200, url
        assert response.json() == listed


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/kernelspecs/nope", "nope"),
        ("/api/kernelspecs/a%20b", "a b"),
        ("/api/kernelspecs/..", ".."),
    ],
)
def test_unknown_kernelspec_is_jupyter_servers_404(installed, token_client, url, name):
    response = token_client.get(url)
    assert response.status_code == 404
    assert response.json() == {
        "message": f"Kernel spec {name} not found",
        "reason": None,
    }


@pytest.mark.parametrize("url", ["/api/kernelspecs", "/api/kernelspecs/python3"])
def test_unauthenticated_api_is_403(installed, client, url):
    response = client.get(url)
    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden", "reason": None}


def test_api_is_get_only(installed, token_client):
    assert token_client.post("/api/kernelspecs").status_code == 405
    assert token_client.delete("/api/kernelspecs/python3").status_code == 405


def test_trailing_slash_redirects_as_jupyter_server(installed, token_client):
    response = token_client.get("/api/kernelspecs/")
    assert response.status_code == 302
    assert response["Location"] == "/api/kernelspecs"


@override_settings(DEFAULT_KERNEL_NAME="mykern")
def test_default_name_is_a_setting(installed, token_client):
    assert specs.default_name() == "mykern"
    assert token_client.get("/api/kernelspecs").json()["default"] == "mykern"


def test_default_name_is_python3_by_default(settings):
    if hasattr(settings, "DEFAULT_KERNEL_NAME"):
        del settings.DEFAULT_KERNEL_NAME
    assert specs.default_name() == "python3"


@override_settings(BASE_URL="/jupyter/")
def test_resource_urls_follow_the_base_url(installed, token_client):
    model = token_client.get("/api/kernelspecs/mykern").json()
    assert model["resources"]["kernel.js"] == "/jupyter/kernelspecs/mykern/kernel.js"
    assert (
        model["resources"]["logo-64x64"] == "/jupyter/kernelspecs/mykern/logo-64x64.png"
    )
    assert specs.spec_model(specs.get_spec("python3"))["resources"]["logo-svg"] == (
        "/jupyter/kernelspecs/python3/logo-svg.svg"
    )


def test_models_are_copies(installed):
    spec = specs.get_spec("python3")
    model = specs.spec_model(spec)
    model["spec"]["metadata"]["debugger"] = False
    model["spec"]["argv"].append("--evil")
    assert specs.spec_model(spec)["spec"] == PYTHON3_SPEC


# ---- resources -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "content_type"),
    # As jupyter_server 2.21.1 answered for the same files.
    [
        ("kernel.js", "application/javascript"),
        ("kernel.css", "text/css"),
        ("logo-64x64.png", "image/png"),
        ("logo-svg.svg", "image/svg+xml"),
        ("logo-noext", "application/octet-stream"),
        ("other.txt", "text/plain"),
        ("kernel.json", "application/json"),
    ],
)
def test_resources_are_served_with_their_content_type(
    installed, token_client, resource, content_type
):
    response = token_client.get(f"/kernelspecs/mykern/{resource}")
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    expected = (installed / "MyKern" / resource).read_bytes()
    assert response.content == expected
    assert response["Content-Length"] == str(len(expected))
    assert response["X-Content-Type-Options"] == "nosniff"
    png = resource.endswith(".png")
    assert (response.get("Cache-Control") == "max-age=2592000") is png


def test_ipykernel_logo_is_served(installed, token_client):
    response = token_client.get("/kernelspecs/python3/logo-64x64.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert (
        response.content == (VENV_KERNELS / "python3" / "logo-64x64.png").read_bytes()
    )


def test_head_has_headers_and_no_body(installed, token_client):
    response = token_client.head("/kernelspecs/mykern/kernel.js")
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Length"] == str(len(MYKERN_FILES["kernel.js"]))
    assert response["Content-Type"] == "application/javascript"


def test_unmodified_resource_is_304(installed, token_client):
    path = installed / "MyKern" / "kernel.css"
    since = http_date(path.stat().st_mtime)
    response = token_client.get(
        "/kernelspecs/mykern/kernel.css", headers={"If-Modified-Since": since}
    )
    assert response.status_code == 304 and response.content == b""
    stale = http_date(path.stat().st_mtime - 60)
    response = token_client.get(
        "/kernelspecs/mykern/kernel.css", headers={"If-Modified-Since": stale}
    )
    assert response.status_code == 200
    garbage = token_client.get(
        "/kernelspecs/mykern/kernel.css", headers={"If-Modified-Since": "yesterday"}
    )
    assert garbage.status_code == 200


def test_resource_of_mixed_case_name(installed, token_client):
    assert token_client.get("/kernelspecs/MyKern/kernel.js").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/kernelspecs/mykern/nope.png",
        "/kernelspecs/nope/kernel.js",
        "/kernelspecs/mykern/",
        "/kernelspecs/mykern",
    ],
)
def test_missing_resource_is_404(installed, token_client, url):
    response = token_client.get(url, follow=True)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_resource_route_refuses_other_methods(installed, token_client):
    assert token_client.post("/kernelspecs/mykern/kernel.js").status_code == 405


def test_resources_need_authentication(installed, client, token):
    url = "/kernelspecs/python3/logo-svg.svg"
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={url}"
    response = client.get(f"{url}?token=wrong")
    assert response.status_code == 302 and response["Location"].startswith("/login")
    # A valid ?token= authenticates the download itself (no login, no redirect).
    response = client.get(f"{url}?token={token}")
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert client.get(url).status_code == 302


def test_resources_with_a_token_header(installed, token_client):
    assert token_client.get("/kernelspecs/mykern/kernel.js").status_code == 200


def test_resources_with_a_session(installed, client_for, user):
    response = client_for(user).get("/kernelspecs/mykern/kernel.js")
    assert response.status_code == 200


@pytest.fixture
def escapes(installed, tmp_path):
    """Files outside mykern's resource dir, one reachable only through a symlink."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    write_spec(installed, "other", {"argv": ["x"]}, {"logo-other.png": b"other"})
    resources = installed / "MyKern"
    (resources / "logo-evil.png").symlink_to(secret)
    (resources / "sub").mkdir()
    (resources / "sub" / "inner.txt").write_bytes(b"inner")
    (resources / "logo-inner.txt").symlink_to(resources / "sub" / "inner.txt")
    return resources


@pytest.mark.parametrize(
    "resource",
    [
        "../other/kernel.json",
        "..%2fother%2fkernel.json",
        "%2e%2e/other/logo-other.png",
        "sub/../kernel.js",
        "./kernel.js",
        "sub//inner.txt",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "logo-evil.png",
        "sub",
        "kernel.js%00.png",
        "..\\other\\kernel.json",
    ],
)
def test_resource_path_traversal_is_404(escapes, token_client, resource):
    response = token_client.get(f"/kernelspecs/mykern/{resource}")
    assert response.status_code == 404
    assert b"secret" not in response.content and b"other" not in response.content


def test_symlinks_inside_the_resource_dir_are_served(escapes, token_client):
    response = token_client.get("/kernelspecs/mykern/logo-inner.txt")
    assert response.status_code == 200 and response.content == b"inner"
    assert token_client.get("/kernelspecs/mykern/sub/inner.txt").content == b"inner"


def test_model_lists_only_servable_logos(escapes):
    resources = specs.spec_model(specs.get_spec("mykern"))["resources"]
    assert "logo-evil" not in resources
    assert resources["logo-inner"] == "/kernelspecs/mykern/logo-inner.txt"


@pytest.mark.parametrize(
    "resource",
    ["", ".", "..", "../x", "a/../kernel.js", "/etc/passwd", "a\x00b", "sub/"],
)
def test_resource_path_refuses_escapes(escapes, resource):
    assert specs.resource_path(specs.get_spec("mykern"), resource) is None


def test_resource_path_finds_files(escapes):
    spec = specs.get_spec("mykern")
    found = specs.resource_path(spec, "sub/inner.txt")
    assert found == Path(os.path.realpath(escapes / "sub" / "inner.txt"))


def test_writable_resource_is_not_served(installed, token_client):
    (installed / "MyKern" / "kernel.js").chmod(0o666)
    assert token_client.get("/kernelspecs/mykern/kernel.js").status_code == 404
    assert "kernel.js" not in specs.spec_model(specs.get_spec("mykern"))["resources"]


# ---- where kernelspecs may come from ------------------------------------------------


def test_kernelspec_in_a_users_data_directory_is_never_listed(
    kernels_dir, settings, caplog
):
    user_kernels = Path(settings.DATA_DIR) / "users" / "1" / ".local/share/jupyter"
    user_kernels = user_kernels / "kernels"
    try:
        write_spec(user_kernels, "planted", {"argv": ["/bin/sh", "-c", "evil"]})
        # Directly configured, and reached through a symlink from a trusted dir.
        (kernels_dir / "linked").symlink_to(user_kernels / "planted")
        settings.KERNELSPEC_DIRS = [user_kernels, kernels_dir]
        with caplog.at_level(logging.WARNING, logger="kernels.specs"):
            found = names()
        assert "planted" not in found and "linked" not in found
        assert "inside the data directory" in caplog.text
        with pytest.raises(specs.NoSuchKernel):
            specs.get_spec("planted")
    finally:
        shutil.rmtree(Path(settings.DATA_DIR) / "users" / "1", ignore_errors=True)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o1777])
def test_kernelspec_writable_by_others_is_never_listed(kernels_dir, caplog, mode):
    write_spec(kernels_dir, "good", {"argv": ["x"]})
    write_spec(kernels_dir, "planted", {"argv": ["x"]}).chmod(mode)
    with caplog.at_level(logging.WARNING, logger="kernels.specs"):
        found = names()
    assert "good" in found and "planted" not in found
    assert "writable by group or others" in caplog.text


def test_writable_kernel_json_is_never_listed(kernels_dir):
    write_spec(kernels_dir, "planted", {"argv": ["x"]})
    (kernels_dir / "planted" / "kernel.json").chmod(0o666)
    assert "planted" not in names()


def test_writable_search_directory_is_ignored_whole(kernels_dir, tmp_path, settings):
    write_spec(kernels_dir, "good", {"argv": ["x"]})
    public = tmp_path / "public"
    write_spec(public, "planted", {"argv": ["x"]})
    public.chmod(0o1777)  # sticky does not help: anyone can add a kernelspec
    settings.KERNELSPEC_DIRS = [public, kernels_dir]
    assert "planted" not in names() and "good" in names()


def test_writable_directory_above_the_search_directory_is_refused(tmp_path, settings):
    shared = tmp_path / "shared"
    base = shared / "kernels"
    write_spec(base, "planted", {"argv": ["x"]})
    shared.chmod(0o777)  # anyone could move "kernels" away and put their own
    settings.KERNELSPEC_DIRS = [base]
    assert "planted" not in names()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_kernelspec_owned_by_another_account_is_never_listed(kernels_dir):
    write_spec(kernels_dir, "good", {"argv": ["x"]})
    planted = write_spec(kernels_dir, "planted", {"argv": ["x"]})
    os.chown(planted, 2_000_000_001, 2_000_000_001)  # a sandboxed kernel's uid
    assert "good" in names() and "planted" not in names()


def test_home_and_jupyter_path_are_not_searched(kernels_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    write_spec(home / ".local/share/jupyter/kernels", "homekern", {"argv": ["x"]})
    write_spec(tmp_path / "jp" / "kernels", "pathkern", {"argv": ["x"]})
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jp"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(home / ".local/share/jupyter"))
    found = names()
    assert "homekern" not in found and "pathkern" not in found


def test_default_search_path_is_the_installation(settings):
    from jserver import settings as jserver_settings

    assert jserver_settings.KERNELSPEC_DIRS == [
        Path(sys.prefix).resolve() / "share/jupyter/kernels",
        Path("/usr/local/share/jupyter/kernels"),
        Path("/usr/share/jupyter/kernels"),
    ]


def test_first_directory_wins(kernels_dir, tmp_path, settings):
    later = tmp_path / "later"
    write_spec(kernels_dir, "dup", {"argv": ["first"]})
    write_spec(later, "DUP", {"argv": ["second"]})
    write_spec(later, "only-later", {"argv": ["x"]})
    settings.KERNELSPEC_DIRS = [kernels_dir, later]
    specs.clear_cache()
    assert specs.get_spec("dup").argv == ("first",)
    assert specs.get_spec("only-later").resource_dir == later / "only-later"


def test_unusable_first_spec_lets_a_later_one_win(kernels_dir, tmp_path, settings):
    later = tmp_path / "later"
    write_spec(kernels_dir, "dup", {"argv": []})
    write_spec(later, "dup", {"argv": ["second"]})
    settings.KERNELSPEC_DIRS = [kernels_dir, later]
    specs.clear_cache()
    assert specs.get_spec("dup").argv == ("second",)


def test_missing_search_directories_are_skipped(kernels_dir, tmp_path, settings):
    write_spec(kernels_dir, "good", {"argv": ["x"]})
    settings.KERNELSPEC_DIRS = [tmp_path / "absent", kernels_dir / "good/kernel.json"]
    assert "good" not in names()
    settings.KERNELSPEC_DIRS = [tmp_path / "absent", kernels_dir]
    assert "good" in names()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'{"display_name": "no argv"}',
        b'{"argv": []}',
        b'{"argv": "python -m ipykernel"}',
        b'{"argv": ["x", 1]}',
        b'{"argv": ["x"], "display_name": 3}',
        b'{"argv": ["x"], "language": null}',
        b'{"argv": ["x"], "kernel_protocol_version": 5.5}',
        b'{"argv": ["x"], "interrupt_mode": "bogus"}',
        b'{"argv": ["x"], "env": {"A": 1}}',
        b'{"argv": ["x"], "env": ["A"]}',
        b'{"argv": ["x"], "metadata": []}',
        b"[" * 100_000,
        b'{"argv": ["x"], "pad": "' + b"x" * (1024 * 1024) + b'"}',
    ],
)
def test_invalid_kernel_json_is_skipped_with_a_warning(kernels_dir, caplog, content):
    write_spec(kernels_dir, "good", {"argv": ["x"]})
    write_spec(kernels_dir, "broken", content)
    with caplog.at_level(logging.WARNING, logger="kernels.specs"):
        found = names()
    assert "good" in found and "broken" not in found
    assert "Ignoring kernelspec" in caplog.text and "broken" in caplog.text


def test_interrupt_mode_is_caseless(kernels_dir):
    write_spec(kernels_dir, "msg", {"argv": ["x"], "interrupt_mode": "Message"})
    specs.clear_cache()
    assert specs.get_spec("msg").interrupt_mode == "message"


@pytest.mark.parametrize("dirname", ["a b", "naïve", "semi;colon"])
def test_invalid_kernel_names_are_skipped(kernels_dir, caplog, dirname):
    write_spec(kernels_dir, dirname, {"argv": ["x"]})
    with caplog.at_level(logging.WARNING, logger="kernels.specs"):
        assert names() == {"python3"}
    assert "is not valid" in caplog.text


def test_directories_without_kernel_json_are_not_kernelspecs(kernels_dir, caplog):
    (kernels_dir / "empty").mkdir()
    (kernels_dir / "file").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="kernels.specs"):
        assert names() == {"python3"}
    assert caplog.text == ""


# ---- the native python3 kernelspec -------------------------------------------------


def test_native_python3_when_none_is_installed(kernels_dir):
    spec = specs.get_spec("python3")
    assert spec.argv == (
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    )
    assert spec.resource_dir == IPYKERNEL_RESOURCES
    assert spec.display_name == "Python 3 (ipykernel)" and spec.language == "python"
    assert spec.metadata["debugger"] is True
    model = specs.spec_model(spec)
    assert set(model["resources"]) == {"logo-32x32", "logo-64x64", "logo-svg"}


def test_native_python3_logo_is_served(kernels_dir, token_client):
    response = token_client.get("/kernelspecs/python3/logo-svg.svg")
    assert response.status_code == 200
    assert response.content == (IPYKERNEL_RESOURCES / "logo-svg.svg").read_bytes()


def test_installed_python3_wins_over_the_native_one(kernels_dir):
    write_spec(kernels_dir, "python3", {"argv": ["custom"], "display_name": "Mine"})
    specs.clear_cache()
    spec = specs.get_spec("python3")
    assert spec.display_name == "Mine" and spec.resource_dir == kernels_dir / "python3"


def test_unusable_python3_falls_back_to_the_native_one(kernels_dir):
    write_spec(kernels_dir, "python3", {"argv": ["custom"]}).chmod(0o777)
    specs.clear_cache()
    assert specs.get_spec("python3").resource_dir == IPYKERNEL_RESOURCES


# ---- command lines and the cache ----------------------------------------------------


def test_command_fills_jupyter_clients_placeholders(installed):
    spec = specs.get_spec("mykern")
    assert specs.command(spec, "/run/k/kernel.json") == [
        "/bin/true",
        "/run/k/kernel.json",
        str(installed / "MyKern"),
        sys.prefix,
        "{x}",
    ]
    assert spec.argv[1] == "{connection_file}"  # the spec itself is unchanged


@pytest.mark.parametrize(
    "python", ["python", "python3", "python{}.{}".format(*sys.version_info[:2])]
)
def test_command_runs_pythons_with_the_servers_interpreter(kernels_dir, python):
    write_spec(kernels_dir, "py", {"argv": [python, "-m", "x", "{connection_file}"]})
    specs.clear_cache()
    assert specs.command(specs.get_spec("py"), "c.json") == [
        sys.executable,
        "-m",
        "x",
        "c.json",
    ]


def test_command_keeps_other_executables(kernels_dir):
    write_spec(kernels_dir, "py", {"argv": ["python2", "{connection_file}{prefix}"]})
    specs.clear_cache()
    assert specs.command(specs.get_spec("py"), "c") == ["python2", "c" + sys.prefix]


def test_scan_is_cached_briefly(kernels_dir, monkeypatch):
    specs.clear_cache()
    assert "late" not in specs.find_specs()
    write_spec(kernels_dir, "late", {"argv": ["x"]})
    assert "late" not in specs.find_specs()  # within CACHE_SECONDS
    monkeypatch.setattr(specs, "CACHE_SECONDS", 0)
    assert "late" in specs.find_specs()


def test_changed_settings_are_a_new_scan(kernels_dir, tmp_path, settings):
    other = tmp_path / "other"
    write_spec(other, "elsewhere", {"argv": ["x"]})
    assert "elsewhere" not in specs.find_specs()
    settings.KERNELSPEC_DIRS = [other]
    assert "elsewhere" in specs.find_specs()


def test_find_specs_returns_a_new_dict(kernels_dir):
    specs.find_specs().clear()
    assert "python3" in specs.find_specs()


def test_get_spec_of_unknown_name(kernels_dir):
    with pytest.raises(specs.NoSuchKernel) as raised:
        specs.get_spec("Nope")
    assert raised.value.name == "Nope"
    assert str(raised.value) == "No such kernel named Nope"

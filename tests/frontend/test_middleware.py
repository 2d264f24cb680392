"""The front ends' static files: where they are served, and how they are cached."""

import gzip

import pytest
from django.test import Client

from frontend import assets

IMMUTABLE = "max-age=315360000, public, immutable"


class StaticClient(Client):
    """A test client that reads file responses to their end, which closes them."""

    def get(self, *args, **kwargs):
        response = super().get(*args, **kwargs)
        if response.streaming:
            response.body = b"".join(response.streaming_content)
        else:
            response.body = response.content
        return response


@pytest.fixture(scope="module")
def client():
    return StaticClient()  # static files need no login, as with jupyter_server


def test_lab_entry_point_is_served_and_cached_forever(client):
    bundle = assets.front_end("lab").main_bundle
    response = client.get(f"/static/lab/{bundle}?v=x")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Cache-Control"] == IMMUTABLE
    assert response.body.startswith(b"(")  # webpack's bundle, not a page


def test_notebook_entry_point_is_served(client):
    bundle = assets.front_end("notebook").main_bundle
    response = client.get(f"/static/notebook/{bundle}")
    assert response.status_code == 200 and response["Cache-Control"] == IMMUTABLE


def test_hashed_chunks_and_fonts_are_immutable(client):
    static = assets.front_end("lab").static_dir
    chunk = next(p.name for p in static.glob("[0-9]*.*.js"))
    font = next(p.name for p in static.glob("*.woff2"))
    for name in (chunk, font):
        assert client.get(f"/static/lab/{name}")["Cache-Control"] == IMMUTABLE


def test_unhashed_files_revalidate(client):
    response = client.get("/static/lab/third-party-licenses.json")
    assert response.status_code == 200
    assert "immutable" not in response["Cache-Control"]


def test_page_templates_are_not_served_as_files(client):
    assert client.get("/static/lab/index.html").status_code == 404


def test_prebuilt_labextensions_are_served(client):
    extension = assets.labextensions()["jupyterlab_pygments"]
    load = extension.build["load"]  # static/remoteEntry.<hash>.js
    response = client.get(f"/lab/extensions/jupyterlab_pygments/{load}")
    assert response.status_code == 200 and response["Cache-Control"] == IMMUTABLE
    scoped = assets.labextensions()["@jupyter-notebook/lab-extension"].build["load"]
    url = f"/lab/extensions/@jupyter-notebook/lab-extension/{scoped}"
    assert client.get(url).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/lab/extensions/jupyterlab_pygments/package.json",  # only static/ is served
        "/lab/extensions/nope/static/remoteEntry.0123456789abcdef.js",
        "/lab/extensions/jupyterlab_pygments/static/../package.json",
    ],
)
def test_missing_extension_files_are_404_not_the_lab_page(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"jupyter-config-data" not in response.content


def test_theme_css_is_served_with_its_relative_urls_intact(client):
    response = client.get("/lab/api/themes/@jupyterlab/theme-light-extension/index.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    dark = client.get("/lab/api/themes/@jupyterlab/theme-dark-extension/index.css")
    assert dark.status_code == 200


def test_missing_theme_is_a_json_404(client_for, user):
    response = client_for(user).get("/lab/api/themes/@nope/theme/index.css")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found", "reason": None}


def test_favicons_and_custom_css(client):
    for name in ("favicon.ico", "favicon-busy-1.ico", "favicon-notebook.ico"):
        assert client.get(f"/static/favicons/{name}").status_code == 200
    response = client.get("/custom/custom.css")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")


def test_site_static_files_still_served(client):
    assert client.get("/static/jserver/site.css").status_code == 200


def test_browsers_accepting_gzip_get_the_compressed_copy(client):
    bundle = assets.front_end("lab").main_bundle
    plain = client.get(f"/static/lab/{bundle}")
    packed = client.get(f"/static/lab/{bundle}", headers={"Accept-Encoding": "gzip"})
    assert packed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed["Vary"]
    assert packed["Cache-Control"] == IMMUTABLE
    assert gzip.decompress(packed.body) == plain.body
    assert len(packed.body) < len(plain.body) / 2

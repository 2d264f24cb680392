"""Fixtures of the browser tests: Debian's Chromium driven by Playwright.

- ``chromium``: the browser (module-scoped). Without ``/usr/bin/chromium`` the
  tests skip, except under ``CI=true`` where that fails (``scripts/test`` installs
  it with apt where it can).
- ``shots``: ``shots(page, "step")`` saves a screenshot in ``var/browser-screenshots``
  (emptied at the start of each run, printed at its end), with each context's
  request log.
- ``open_context``: ``open_context(base_url, **options)`` is a fresh browser
  context (its own cookies; Playwright's context options) whose traffic is
  recorded; ``traffic.assert_clean()`` checks it. When a test fails, each open
  page is screenshotted (``<test>-failed-<n>.png``).
- ``kernel_users``: a list to which a test adds the users whose kernels it may
  start; afterwards each one's kernels are shut down through the API, and no
  kernel process of the data directory may be left.
"""

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.factories import make_token
from tests.kernels.conftest import Api, wait_no_kernel_processes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Errors the front ends also throw against jupyter_server itself (checked with
# jupyter_server 2.21.1): (page path ending, start of the message).
UPSTREAM_PAGE_ERRORS = [
    # Notebook 7.6.5's shortcuts plugin, on a settings change of another plugin.
    ("/tree", "TypeError: Cannot read properties of undefined (reading 'schema')"),
    (".ipynb", "TypeError: Cannot read properties of undefined (reading 'schema')"),
    # Notebook 7.6.5's notebook page has no file browser for this command.
    (".ipynb", "Error: Command 'filebrowser:open-path' not registered."),
]
# Errors they log to the console against jupyter_server 2.21.1 too: (page path
# ending, start of the message).
UPSTREAM_CONSOLE_ERRORS = [
    # Notebook 7.6.5's execution indicator setting, without a status bar.
    ("/tree", "Cannot read properties of null (reading 'updateRenderOption')"),
    (".ipynb", "Cannot read properties of null (reading 'updateRenderOption')"),
]

_SHOTS_KEY = pytest.StashKey[Path]()
_OPENED_KEY = pytest.StashKey[list]()
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@dataclass
class Request:
    method: str
    url: str
    status: int | None  # None: the request failed without a response
    error: str = ""

    def __str__(self) -> str:
        status = self.status if self.status is not None else f"FAILED {self.error}"
        return f"{self.method} {status} {self.url}"


def _known(page_url: str, error: str, known: list[tuple[str, str]]) -> bool:
    return any(
        page_url.split("?")[0].endswith(path) and error.startswith(message)
        for path, message in known
    )


@dataclass
class Traffic:
    """Everything one browser context asked for, and what its pages logged."""

    base_url: str
    requests: list[Request] = field(default_factory=list)
    # (page URL, text, URL of the script or resource that logged it)
    console_errors: list[tuple[str, str, str]] = field(default_factory=list)
    page_errors: list[tuple[str, str]] = field(default_factory=list)  # (url, error)
    websockets: list[str] = field(default_factory=list)
    # (method, path, status) answers that jupyter_server gives the same request.
    upstream: set[tuple[str, str, int]] = field(default_factory=set)

    def path(self, url: str) -> str:
        """Return a URL's path relative to the base URL, without its query."""
        return url.removeprefix(self.base_url).split("?")[0]

    def paths(self) -> list[str]:
        """Return the paths requested, relative to the base URL, without queries."""
        return [self.path(r.url) for r in self.requests]

    def allow_upstream_failure(self, method: str, path: str, status: int) -> None:
        """Accept one error answer that jupyter_server gives the front end too.

        Only for requests checked against jupyter_server 2.21.1 in the same flow,
        named by the test that makes them.
        """
        self.upstream.add((method, path, status))

    def _upstream(self, request: Request) -> bool:
        return (request.method, self.path(request.url), request.status) in self.upstream

    def failures(self) -> list[Request]:
        """Requests answered with an error, or failed (not merely cancelled)."""
        return [
            r
            for r in self.requests
            if (
                (r.status is not None and r.status >= 400 and not self._upstream(r))
                or (r.status is None and "ERR_ABORTED" not in r.error)
            )
        ]

    def unexpected_console_errors(self) -> list[str]:
        """Console errors, but those of upstream failures and known upstream bugs."""
        return [
            f"{text} ({url}, on {page})"
            for page, text, url in self.console_errors
            if not (
                text.startswith("Failed to load resource")
                and any(
                    self.path(url) == path and f"status of {status} " in text
                    for _method, path, status in self.upstream
                )
            )
            and not _known(page, text, UPSTREAM_CONSOLE_ERRORS)
        ]

    def assert_clean(self) -> None:
        """Assert no request failed and no page logged an error or threw."""
        assert not self.failures(), "\n".join(map(str, self.failures()))
        console = self.unexpected_console_errors()
        assert not console, "\n".join(console)
        unexpected = [
            error
            for page, error in self.page_errors
            if not _known(page, error, UPSTREAM_PAGE_ERRORS)
        ]
        assert not unexpected, "\n".join(unexpected)

    def save(self, path: Path) -> None:
        lines = [*map(str, self.requests), *(f"WS {u}" for u in self.websockets)]
        path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the browser tests: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so
    # Django would refuse the tests' own (synchronous) database calls. Only for
    # this module; start_daphne keeps the variable away from the server.
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture(scope="session")
def shots_dir(request) -> Path:
    """Return the run's screenshot folder, emptied: ``var/browser-screenshots``."""
    path = REPO / "var" / "browser-screenshots"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    request.config.stash[_SHOTS_KEY] = path
    return path


@pytest.fixture
def shots(shots_dir, request):
    """Return ``shot(page, step)``, saving ``<test>-<n>-<step>.png``."""
    counter = iter(range(1, 100))
    name = re.sub(r"\W+", "-", request.node.name.removeprefix("test_"))

    def shot(page, step: str) -> Path:
        path = shots_dir / f"{name}-{next(counter):02d}-{step}.png"
        page.screenshot(path=path)
        return path

    return shot


@pytest.fixture
def open_context(chromium, shots_dir, request) -> Iterator:
    """Return ``open_context(base_url, **options)``: a context and its ``Traffic``."""
    opened = []

    def open_(base_url: str, **options):
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = chromium.new_context(**options)
        traffic = Traffic(base_url)

        def on_response(response) -> None:
            traffic.requests.append(
                Request(response.request.method, response.url, response.status)
            )

        def on_failed(failed) -> None:
            traffic.requests.append(
                Request(failed.method, failed.url, None, failed.failure or "")
            )

        def on_page(page) -> None:
            def on_console(message) -> None:
                if message.type == "error":
                    where = message.location.get("url", "")
                    traffic.console_errors.append((page.url, message.text, where))

            page.on("console", on_console)
            page.on(
                "pageerror",
                lambda e: traffic.page_errors.append((page.url, e.stack or str(e))),
            )
            page.on("websocket", lambda ws: traffic.websockets.append(ws.url))

        context.on("response", on_response)
        context.on("requestfailed", on_failed)
        context.on("page", on_page)
        opened.append((context, traffic))
        return context, traffic

    request.node.stash[_OPENED_KEY] = opened
    yield open_
    name = re.sub(r"\W+", "-", request.node.name.removeprefix("test_"))
    for number, (context, traffic) in enumerate(opened, 1):
        traffic.save(shots_dir / f"{name}-requests-{number}.txt")
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Screenshot every open page of a failed test, before its fixtures end."""
    report = yield
    opened = item.stash.get(_OPENED_KEY, [])
    shots_dir = item.config.stash.get(_SHOTS_KEY, None)
    if report.when == "call" and report.failed and opened and shots_dir:
        name = re.sub(r"\W+", "-", item.name.removeprefix("test_"))
        pages = [page for context, _ in opened for page in context.pages]
        for number, page in enumerate(pages, 1):
            try:
                page.screenshot(path=shots_dir / f"{name}-failed-{number}.png")
            except Exception:  # a page that crashed or closed: nothing to show
                pass
    return report


@pytest.fixture
def kernel_users(daphne_server) -> Iterator[list]:
    """Return a list of users whose kernels are all shut down after the test."""
    users: list = []
    yield users
    for user in users:
        api = Api(daphne_server.url, make_token(user, "cleanup"))
        _, _, kernels = api.call_sync("GET", "api/kernels")
        for kernel in kernels or []:
            api.call_sync("DELETE", f"api/kernels/{kernel['id']}")
    left = wait_no_kernel_processes()
    assert not left, f"kernel processes left behind: {left}"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if (path := config.stash.get(_SHOTS_KEY, None)) is not None:
        terminalreporter.write_line(f"browser screenshots and request logs: {path}")

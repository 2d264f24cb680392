"""Static files: the site's own, and the front ends' built assets, via WhiteNoise.

The front ends' files are served where their page config points, under the
base URL: ``static/lab/`` and ``static/notebook/`` (the two webpack builds),
``lab/extensions/<name>/static/`` (prebuilt labextensions), ``lab/api/themes/``
(theme CSS, relative ``url()``s resolve as they are), ``static/favicons/`` and
``custom/custom.css``. Content-hashed names are cached for a year, immutable;
the others revalidate after WhiteNoise's max-age. Browsers accepting gzip get
the copies ``frontend.compress`` made. Like jupyter_server's static handlers
these need no login: they are the same public code for everyone.
"""

import functools
import re
from pathlib import Path

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware

from frontend import assets, compress

# webpack's content-hashed names: main.<hash>.js, 1053.<hash>.js, <hash>.woff2,
# remoteEntry.<hash>.js (16 to 20 hex digits in JupyterLab 4 and Notebook 7).
_HASHED_NAME = re.compile(r"(?:^|/)(?:[\w-]+\.)?[0-9a-f]{16,}\.\w+$")


# Once per process and directory: a new mirror needs a restart, as new files do.
_mirror = functools.cache(compress.compressed_mirror)


def mounts() -> list[tuple[str, Path]]:
    """Return ``(URL prefix under the base URL, directory)``, lowest priority first."""
    found = [
        ("static/lab/", assets.front_end("lab").static_dir),
        ("static/notebook/", assets.front_end("notebook").static_dir),
        ("static/favicons/", assets.favicons_dir()),
        ("custom/", assets.notebook_custom_dir()),
    ]
    found += [
        (f"lab/extensions/{extension.name}/static/", extension.static_dir)
        for extension in assets.labextensions().values()
    ]
    found += [("lab/api/themes/", path) for path in reversed(assets.theme_dirs())]
    return [(prefix, path) for prefix, path in found if path.is_dir()]


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, plus the front ends' directories (page templates excluded).

    Unlike WhiteNoise's own middleware it is async-capable: under daphne a
    request that is not for a static file goes on without a thread hop, and a
    file is opened in a worker thread, never on the event loop.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=django_settings) -> None:
        super().__init__(get_response, settings)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        base = settings.BASE_URL
        cache = settings.FRONTEND_CACHE_DIR
        found = mounts()
        self.front_end_prefixes = tuple(base + prefix for prefix, _ in found)
        for prefix, path in found:
            served = _mirror(path, cache)
            self.add_files(str(served), prefix=base + prefix)

    def _find(self, request: HttpRequest):
        path = request.path_info
        if path.endswith(".html") and path.startswith(self.front_end_prefixes):
            return None  # index.html is a template, not a file
        if self.autorefresh:
            return self.find_file(path)
        return self.files.get(path)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.is_async:
            return self.__acall__(request)
        static_file = self._find(request)
        if static_file is None:
            return self.get_response(request)
        return self.serve(static_file, request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if self.autorefresh:  # development only: looking up touches the disk
            static_file = await sync_to_async(self._find)(request)
        else:
            static_file = self._find(request)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self.serve, thread_sensitive=False)(
            static_file, request
        )

    def immutable_file_test(self, path: str, url: str) -> bool:
        return bool(_HASHED_NAME.search(url)) or super().immutable_file_test(path, url)

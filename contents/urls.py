"""Routes of the Contents API and ``/files``, as jupyter_server's.

The path pattern is jupyter_server's ``path_regex``: empty, ``/``, or
``/``-separated non-empty segments (so ``a//b`` matches nothing).
"""

from django.urls import re_path

from contents import views

PATH = r"(?P<path>(?:/[^/]+)+|/?)"

urlpatterns = [
    re_path(rf"^api/contents{PATH}/checkpoints$", views.checkpoints),
    re_path(
        rf"^api/contents{PATH}/checkpoints/(?P<checkpoint_id>[\w-]+)$",
        views.checkpoint,
    ),
    re_path(rf"^api/contents{PATH}/trust$", views.trust),
    re_path(rf"^api/contents{PATH}$", views.contents, name="api-contents"),
    re_path(r"^api/notebooks/?(?P<path>.*)$", views.notebooks_redirect),
    re_path(r"^files/(?P<path>.*)$", views.files, name="files"),
]

"""The site's URLs plus ``/media/`` served from MEDIA_ROOT, for the browser tests.

The project serves media files only with DEBUG on (production has the proxy, or the
object store, serve them), and the live server runs with DEBUG off. MEDIA_ROOT is
read per request: the conftest fixture points it at each test's tmp folder. Used
through the ``serve_media`` fixture (tests/browser.py)."""

from django.conf import settings
from django.urls import path
from django.views.static import serve

from studyweb.urls import urlpatterns as site_urlpatterns


def _media(request, path):
    return serve(request, path, document_root=settings.MEDIA_ROOT)


urlpatterns = [*site_urlpatterns, path("media/<path:path>", _media)]

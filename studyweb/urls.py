from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.static import serve

from studyweb import views

# JSON endpoints (/api/, the rater endpoints) answer these as JSON; pages as pages.
handler400 = "studyweb.boundary.bad_request"
handler403 = "studyweb.boundary.permission_denied"
handler404 = "studyweb.boundary.page_not_found"
handler500 = "studyweb.boundary.server_error"


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    # Browsers ask for /favicon.ico on every page whatever <link rel="icon"> says;
    # resolved per request, so a hashed (manifest) static name is followed. Not
    # permanent: the hashed name changes with the icon.
    return HttpResponseRedirect(static("img/favicon.svg"))


urlpatterns = [
    path("", views.home, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("studyweb.accounts")),
    path("api/", include("studyweb.api")),
    path("", include("annotation.urls")),
    path("", include("scoring.workspace.urls")),
]

if settings.DEBUG:
    # Development only; production serves MEDIA_ROOT from the proxy (docs/deployment.md).
    urlpatterns += [path("media/<path:path>", serve, {"document_root": settings.MEDIA_ROOT})]

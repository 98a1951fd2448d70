from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.static import serve

from studyweb import views

urlpatterns = [
    path("", views.home, name="home"),
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

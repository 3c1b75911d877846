"""The REST API's root: /api/v1/... (mounted at api/ by portal.urls), its schema and docs."""

from django.urls import include, path, re_path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from portal.api import not_found


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents `portal.api.ApiKeyAuthentication` in the schema (defined here, not in portal.api,
    which DRF imports while its own views module is still loading)."""

    target_class = "portal.api.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer pbx_...` (`Api-Key pbx_...` works too).",
        }


v1 = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("", include("accounts.api_urls")),
    path("", include("billing.api_urls")),
    path("", include("sipsync.api_urls")),
]

app_name = "api"
urlpatterns = [
    path("v1/", include(v1)),
    re_path(r"^[\s\S]*$", not_found),  # not ".*": a path with a newline in it is no endpoint either
]

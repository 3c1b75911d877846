"""The REST API's shared parts: authentication, tenancy, permissions, errors, pagination,
throttling, preconditions and the OpenAPI schema's common pieces.

Every error leaves the API in one JSON shape:

    {"error": {"code": "not_found", "message": "No such SIP account.", "fields": {}}}

`code` is stable (clients branch on it), `message` is for people, `fields` maps input fields
to their problems (empty when the error is about no field in particular).
"""

import hashlib
import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.urls import register_converter
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from accounts import api_keys
from accounts.models import ApiKey
from portal import errors
from portal.tenancy import Tenant, tenant_of

logger = logging.getLogger(__name__)

# The largest id a path or a field may name: a 64-bit signed integer, like the primary keys.
# Larger numbers would reach the database and fail there (a 500) instead of being "not found".
MAX_ID = 2**63 - 1


class IdConverter:
    """`<id:name>` in the API's routes: a positive integer that fits a primary key."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")


# --- authentication -------------------------------------------------------------------------


class ApiKeyPrincipal:
    """request.user for a customer key that acts as no particular user."""

    is_authenticated = True
    is_active = True
    is_staff = False
    is_anonymous = False
    pk = id = None

    def __init__(self, key: ApiKey):
        self.key = key
        self.username = f"api-key:{key.prefix}"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>` or `Authorization: Api-Key <key>`."""

    keywords = (b"bearer", b"api-key")

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        try:
            plaintext = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        key = api_keys.api_key_authenticate(plaintext)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        api_keys.api_key_mark_used(key=key)
        return (key.user if key.user is not None else ApiKeyPrincipal(key)), key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def request_tenant(request) -> Tenant:
    """Who is asking: the key's customer (or staff), else the signed-in user's tenant."""
    cached = getattr(request, "_api_tenant", None)
    if cached is not None:
        return cached
    if isinstance(request.auth, ApiKey):
        key = request.auth
        tenant = Tenant.staff() if key.is_staff else Tenant(customer_id=key.customer_id)
    else:
        tenant = tenant_of(request.user)
    request._api_tenant = tenant
    return tenant


def acting_user(request):
    """The Django user to record as the actor (None for a customer key without a user)."""
    user = request.user
    return user if getattr(user, "pk", None) is not None else None


# --- permissions ----------------------------------------------------------------------------


class IsTenant(BasePermission):
    """Signed in (key or session) and acting for a customer or for staff."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        request_tenant(request)  # raises PermissionDenied for a user of no customer
        return True


class IsStaffTenant(IsTenant):
    message = "Only the provider's staff may do this."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and request_tenant(request).is_staff


# --- throttling -----------------------------------------------------------------------------


class PerKeyThrottle(SimpleRateThrottle):
    """One budget per API key (per user for sessions, per address otherwise)."""

    scope = "api"

    def get_rate(self):
        # Read at request time (DRF binds THROTTLE_RATES when the class is made), so a changed
        # setting takes effect without a restart.
        from rest_framework.settings import api_settings

        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey):
            ident = f"key:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


# --- pagination -----------------------------------------------------------------------------


class Pagination(LimitOffsetPagination):
    """`?limit=` (default 50, at most 500) and `?offset=`; answers with count, next, previous, results.

    A page is read in two steps (a "deferred join"): first the page's primary keys, in order,
    from the ordering index alone; then those rows with their joins and prefetches. A deep
    offset then skips index entries, not joined rows, and the cost of a page stays flat as the
    table grows.
    """

    default_limit = 50
    max_limit = 500

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        self.count = self.get_count(queryset)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        if self.count == 0 or self.offset > self.count:
            return []
        keys = queryset.select_related(None).prefetch_related(None).values_list("pk", flat=True)
        page_keys = list(keys[self.offset : self.offset + self.limit])
        rows = {row.pk: row for row in queryset.filter(pk__in=page_keys).order_by()}
        return [rows[pk] for pk in page_keys if pk in rows]


# --- preconditions (optimistic concurrency) -------------------------------------------------


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The resource changed since you read it; fetch it again and retry."
    default_code = "precondition_failed"


def etag_of(obj) -> str:
    """A strong validator from the row's identity and `updated_at`."""
    stamp = f"{type(obj).__name__}:{obj.pk}:{obj.updated_at.isoformat()}"
    return '"' + hashlib.sha256(stamp.encode()).hexdigest()[:32] + '"'


def check_if_match(request, obj) -> None:
    """Refuse with 412 when `If-Match` is given and names no current version of `obj`."""
    header = request.headers.get("If-Match")
    if header is None:
        return
    wanted = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if "*" not in wanted and etag_of(obj) not in wanted:
        raise PreconditionFailed()


# --- errors ---------------------------------------------------------------------------------

_DOMAIN_STATUS = {
    errors.NotFound: status.HTTP_404_NOT_FOUND,
    errors.PermissionDenied: status.HTTP_403_FORBIDDEN,
    errors.Conflict: status.HTTP_409_CONFLICT,
}


def _flatten(detail) -> dict[str, list[str]]:
    """DRF's nested validation detail as {"field" or "field.sub" or "items.0": [messages]}."""
    result: dict[str, list[str]] = {}

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                result.setdefault(path or "non_field_errors", []).extend(str(v) for v in value)
            else:
                for index, sub in enumerate(value):
                    walk(sub, f"{path}.{index}" if path else str(index))
        else:
            result.setdefault(path or "non_field_errors", []).append(str(value))

    walk(detail, "")
    return result


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def exception_handler(exc, context):
    """Map domain errors and DRF's exceptions to one JSON error shape (anything else is a 500)."""
    if isinstance(exc, errors.ApplicationError):
        http_status = next(
            (code for cls, code in _DOMAIN_STATUS.items() if isinstance(exc, cls)),
            status.HTTP_400_BAD_REQUEST,
        )
        return Response(error_body(exc.code, exc.message, exc.field_errors), status=http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    # Imported here: this module is loaded while rest_framework.views itself is being imported
    # (it names the authentication, permission and throttle classes in the settings).
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "The request has invalid fields."
        if list(fields) in ([], ["non_field_errors"]):
            message = (fields.pop("non_field_errors", None) or ["Invalid input."])[0]
        response.data = error_body("invalid", message, fields)
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        response.data = error_body(str(code), str(detail))
    return response


ERROR_SCHEMA = {
    "type": "object",
    "description": "The shape of every error answer.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "stable machine-readable code, e.g. not_found"},
                "message": {"type": "string", "description": "what went wrong, for people"},
                "fields": {
                    "type": "object",
                    "description": "problems per input field ('items.0' for list elements)",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message", "fields"],
        }
    },
    "required": ["error"],
}

ERROR_RESPONSES = {
    "400": "Invalid input (a validation or domain rule)",
    "401": "No or invalid credentials",
    "403": "Not allowed for this key or user",
    "404": "No such resource for this tenant",
    "405": "Method not allowed",
    "406": "Not acceptable",
    "409": "Conflicts with the current state",
    "412": "If-Match names no current version",
    "415": "Unsupported media type",
    "429": "Too many requests (see Retry-After)",
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation documents the error answers it can give."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_RESPONSES.items():
                responses.setdefault(code, {"description": description, "content": ref})
            if "429" in responses:
                responses["429"].setdefault(
                    "headers",
                    {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
                )
    return result


# --- the catch-all ---------------------------------------------------------------------------


def _build_auto_schema():
    from drf_spectacular.openapi import AutoSchema

    class ApiAutoSchema(AutoSchema):
        """Names components after the view nesting the serializer: `CustomerCollectionApi.CreateInput`
        becomes `CustomerCollectionCreateInput` (each view has its own `CreateInput`, `Filter`...)."""

        def get_serializer_name(self, serializer, direction):
            cls = serializer if isinstance(serializer, type) else type(serializer)
            return cls.__qualname__.replace("Api.", "").replace(".", "")

    return ApiAutoSchema


def __getattr__(name: str):
    # The schema class subclasses drf-spectacular's AutoSchema, which imports rest_framework.views;
    # DRF imports this module while rest_framework.views is loading (the settings name our
    # authentication, permission and throttle classes), so the class is built on first use.
    if name == "ApiAutoSchema":
        globals()[name] = schema_class = _build_auto_schema()
        return schema_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Any path under /api/ that names no endpoint: a 404 in the error shape."""
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


# --- view helpers ----------------------------------------------------------------------------


def validated(serializer_class, data, *, partial: bool = False, forbid_unknown: bool = True) -> dict:
    """Validate `data` with `serializer_class`; unknown fields are refused rather than ignored."""
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    if forbid_unknown and hasattr(data, "keys"):
        unknown = sorted(set(data.keys()) - set(serializer.fields))
        if unknown:
            raise exceptions.ValidationError({name: ["Unknown field."] for name in unknown})
    return serializer.validated_data


def query(serializer_class, request) -> dict:
    """Validated query parameters (pagination's own are left to the paginator)."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def paginated(view, request, queryset, serializer_class, *, context: dict | None = None) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, context=context or {}).data)


def filtered(queryset, params: dict, lookups: dict[str, str]):
    """Narrow ``queryset`` by each query parameter that was given, through its lookup
    (``{"since": "created_at__gte"}``); parameters left out or empty change nothing."""
    for param, lookup in lookups.items():
        value = params.get(param)
        if value:
            queryset = queryset.filter(**{lookup: value})
    return queryset


def ordered(queryset, ordering: str | None, allowed: dict[str, tuple[str, ...]], default: str):
    """Order by one of the documented `ordering` values (a leading '-' reverses)."""
    name = ordering or default
    descending = name.startswith("-")
    fields = allowed[name.removeprefix("-")]
    if descending:
        fields = tuple(f.removeprefix("-") if f.startswith("-") else f"-{f}" for f in fields)
    return queryset.order_by(*fields)


def ordering_choices(allowed) -> list[str]:
    return [choice for name in allowed for choice in (name, f"-{name}")]

"""REST API for customers, SIP accounts, codecs, caller IDs and API keys.

Views validate input with their own nested serializers, read through `accounts.selectors` with
the caller's tenant, and change things only through `accounts.services` (so the API pushes to
the SIP nodes through the outbox exactly as the portal does). Secrets never appear in a read:
a SIP password is returned once, by the call that set it; HA1 digests never.
"""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import api_keys, selectors, services
from accounts.choices import CallClass, CallerIdStatus, Codec, CustomerStatus
from accounts.models import MAX_VOICEMAIL_MESSAGES, ApiKey, CallerId, Customer, SipAccount
from portal.api import (
    MAX_ID,
    IsStaffTenant,
    Pagination,
    acting_user,
    check_if_match,
    etag_of,
    ordered,
    ordering_choices,
    paginated,
    query,
    request_tenant,
    validated,
)
from portal.errors import NotFound, PermissionDenied

IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The ETag from a read; the change is refused with 412 if the resource changed since.",
)


def _customer_for_write(request, customer_id: int | None) -> Customer:
    """The customer a new object belongs to: a customer key's own; staff must name one."""
    tenant = request_tenant(request)
    if tenant.is_staff:
        if customer_id is None:
            raise serializers.ValidationError({"customer": ["Staff must name the customer."]})
        return selectors.customer_get(tenant=tenant, customer_id=customer_id)
    if customer_id is not None and customer_id != tenant.customer_id:
        raise NotFound("No such customer.")
    return selectors.customer_get(tenant=tenant, customer_id=tenant.customer_id)


# --- customers ------------------------------------------------------------------------------


class CustomerOutput(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = [
            "id",
            "account_number",
            "name",
            "status",
            "country_code",
            "national_prefix",
            "currency",
            "rate_plan",
            "created_at",
            "updated_at",
        ]


CUSTOMER_ORDERING = {
    "name": ("name", "id"),
    "account_number": ("account_number",),
    "created_at": ("created_at", "id"),
}


class CustomerCollectionApi(APIView):
    """Customers: the provider's staff list and create them."""

    pagination_class = Pagination

    permission_classes = [IsStaffTenant]

    class Filter(serializers.Serializer):
        search = serializers.CharField(required=False, max_length=100, help_text="name or account number")
        status = serializers.ChoiceField(choices=CustomerStatus.choices, required=False)
        ordering = serializers.ChoiceField(choices=ordering_choices(CUSTOMER_ORDERING), required=False)

    class CreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        account_number = serializers.CharField(max_length=16, required=False)
        country_code = serializers.CharField(max_length=3, required=False, default="27")
        national_prefix = serializers.CharField(max_length=2, required=False, default="0", allow_blank=True)
        currency = serializers.CharField(max_length=3, required=False, default="ZAR")

    @extend_schema(operation_id="customers_list", parameters=[Filter], responses=CustomerOutput(many=True))
    def get(self, request):
        params = query(self.Filter, request)
        customers = selectors.customer_list(tenant=request_tenant(request))
        if params.get("search"):
            term = params["search"].strip()
            customers = customers.filter(Q(name__icontains=term) | Q(account_number__istartswith=term))
        if params.get("status"):
            customers = customers.filter(status=params["status"])
        customers = ordered(customers, params.get("ordering"), CUSTOMER_ORDERING, "name")
        return paginated(self, request, customers, CustomerOutput)

    @extend_schema(operation_id="customers_create", request=CreateInput, responses={201: CustomerOutput})
    def post(self, request):
        data = validated(self.CreateInput, request.data)
        customer = services.customer_create(**data)
        return Response(CustomerOutput(customer).data, status=status.HTTP_201_CREATED)


class CustomerDetailApi(APIView):
    """One customer: the provider's staff any, a customer's key its own."""

    @extend_schema(operation_id="customers_retrieve", responses=CustomerOutput)
    def get(self, request, customer_id: int):
        customer = selectors.customer_get(tenant=request_tenant(request), customer_id=customer_id)
        return Response(CustomerOutput(customer).data, headers={"ETag": etag_of(customer)})


class CustomerSuspendApi(APIView):
    """Suspend a customer: its phones are refused service until it is reinstated."""

    permission_classes = [IsStaffTenant]
    new_status = CustomerStatus.SUSPENDED

    @extend_schema(
        operation_id="customers_suspend", request=None, responses=CustomerOutput, parameters=[IF_MATCH]
    )
    def post(self, request, customer_id: int):
        with transaction.atomic():
            customer = selectors.customer_get(tenant=request_tenant(request), customer_id=customer_id)
            check_if_match(request, customer)
            customer = services.customer_set_status(customer=customer, status=self.new_status)
        return Response(CustomerOutput(customer).data, headers={"ETag": etag_of(customer)})


class CustomerReinstateApi(CustomerSuspendApi):
    """Reinstate a suspended customer."""

    new_status = CustomerStatus.ACTIVE

    @extend_schema(
        operation_id="customers_reinstate", request=None, responses=CustomerOutput, parameters=[IF_MATCH]
    )
    def post(self, request, customer_id: int):
        return super().post(request, customer_id)


# --- SIP accounts ---------------------------------------------------------------------------


class SipAccountOutput(serializers.Serializer):
    """A SIP account as anyone may read it: no password, no HA1."""

    id = serializers.IntegerField()
    customer = serializers.IntegerField(source="customer_id")
    extension = serializers.CharField()
    label = serializers.CharField()
    username = serializers.CharField()
    realm = serializers.CharField()
    enabled = serializers.BooleanField()
    password_change_required = serializers.BooleanField()
    password_changed_at = serializers.DateTimeField()
    max_concurrent_calls = serializers.IntegerField()
    max_contacts = serializers.IntegerField()
    call_classes = serializers.ListField(child=serializers.ChoiceField(choices=CallClass.choices))
    forward_all_to = serializers.CharField()
    do_not_disturb = serializers.BooleanField()
    default_caller_id = serializers.IntegerField(source="default_caller_id_id", allow_null=True)
    default_caller_id_number = serializers.SerializerMethodField()
    codecs = serializers.SerializerMethodField()
    voicemail_new = serializers.IntegerField(help_text="new messages in the account's mailbox")
    voicemail_old = serializers.IntegerField(help_text="saved messages in the account's mailbox")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_default_caller_id_number(self, account) -> str | None:
        return account.default_caller_id.number if account.default_caller_id_id else None

    def get_codecs(self, account) -> list[str]:
        by_account = self.context.get("codecs")
        if by_account is not None:
            return by_account[account.pk]
        return selectors.sip_account_codecs(account=account)

    def to_representation(self, account) -> dict:
        # The same fields as declared above (they document the schema), built directly: a page
        # of 50 accounts through DRF's per-field machinery costs several times more.
        zone = timezone.get_current_timezone()

        def time(value) -> str:  # DRF's DateTimeField output, without its per-call lookups
            text = value.astimezone(zone).isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text

        return {
            "id": account.pk,
            "customer": account.customer_id,
            "extension": account.extension,
            "label": account.label,
            "username": account.username,
            "realm": account.realm,
            "enabled": account.enabled,
            "password_change_required": account.password_change_required,
            "password_changed_at": time(account.password_changed_at),
            "max_concurrent_calls": account.max_concurrent_calls,
            "max_contacts": account.max_contacts,
            "call_classes": account.call_classes,
            "forward_all_to": account.forward_all_to,
            "do_not_disturb": account.do_not_disturb,
            "default_caller_id": account.default_caller_id_id,
            "default_caller_id_number": self.get_default_caller_id_number(account),
            "codecs": self.get_codecs(account),
            "voicemail_new": account.voicemail_new,
            "voicemail_old": account.voicemail_old,
            "created_at": time(account.created_at),
            "updated_at": time(account.updated_at),
        }



class SipAccountWithPassword(SipAccountOutput):
    password = serializers.CharField(help_text="the SIP password: shown this once, never again")


SIP_ACCOUNT_ORDERING = {
    "extension": ("customer_id", "extension"),
    "username": ("username",),
    "created_at": ("created_at", "id"),
    "updated_at": ("updated_at", "id"),
}


def _issued(issued: services.IssuedCredentials) -> dict:
    data = dict(SipAccountOutput(issued.account).data)
    data["password"] = issued.password
    return data


class SipAccountCollectionApi(APIView):
    """SIP accounts of the caller's tenant: list (with search) and create."""

    pagination_class = Pagination

    class Filter(serializers.Serializer):
        search = serializers.CharField(
            required=False, max_length=64, help_text="extension prefix, or part of the username or label"
        )
        customer = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="staff: one customer's"
        )
        enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
        ordering = serializers.ChoiceField(choices=ordering_choices(SIP_ACCOUNT_ORDERING), required=False)

    class CreateInput(serializers.Serializer):
        customer = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=MAX_ID,
            help_text="required for staff; a customer key creates its own",
        )
        extension = serializers.CharField(max_length=8)
        label = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
        username = serializers.CharField(
            max_length=64, required=False, help_text="default: account number + extension"
        )
        password = serializers.CharField(
            max_length=64,
            required=False,
            trim_whitespace=False,
            help_text="default: a generated strong password",
        )
        codecs = serializers.ListField(
            child=serializers.ChoiceField(choices=Codec.choices), required=False, min_length=1, max_length=10
        )
        max_concurrent_calls = serializers.IntegerField(required=False, default=2, min_value=1, max_value=100)

    @extend_schema(
        operation_id="sip_accounts_list", parameters=[Filter], responses=SipAccountOutput(many=True)
    )
    def get(self, request):
        params = query(self.Filter, request)
        accounts = selectors.sip_account_list(tenant=request_tenant(request), search=params.get("search", ""))
        # The output names the customer by id only, and the page's codecs are read as values
        # in one query: no Customer or codec objects for every row.
        accounts = accounts.select_related(None).select_related("default_caller_id").prefetch_related(None)
        if params.get("customer"):
            accounts = accounts.filter(customer_id=params["customer"])
        if params.get("enabled") is not None:
            accounts = accounts.filter(enabled=params["enabled"])
        accounts = ordered(accounts, params.get("ordering"), SIP_ACCOUNT_ORDERING, "extension")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(accounts, request, view=self)
        codecs = selectors.sip_account_codecs_by_account(account_ids=[account.pk for account in page])
        return paginator.get_paginated_response(
            SipAccountOutput(page, many=True, context={"codecs": codecs}).data
        )

    @extend_schema(
        operation_id="sip_accounts_create", request=CreateInput, responses={201: SipAccountWithPassword}
    )
    def post(self, request):
        data = validated(self.CreateInput, request.data)
        customer = _customer_for_write(request, data.pop("customer", None))
        issued = services.sip_account_create(customer=customer, **data)
        return Response(
            _issued(issued), status=status.HTTP_201_CREATED, headers={"ETag": etag_of(issued.account)}
        )


class SipAccountDetailApi(APIView):
    """One SIP account: read, and change its permissions, limits, forwarding, DND, caller ID."""

    class UpdateInput(serializers.Serializer):
        label = serializers.CharField(max_length=100, allow_blank=True)
        enabled = serializers.BooleanField()
        max_concurrent_calls = serializers.IntegerField(min_value=1, max_value=100)
        max_contacts = serializers.IntegerField(min_value=1, max_value=20)
        forward_all_to = serializers.CharField(
            max_length=32, allow_blank=True, help_text="extension or number; '' for none"
        )
        do_not_disturb = serializers.BooleanField()
        call_classes = serializers.ListField(
            child=serializers.ChoiceField(choices=CallClass.choices), max_length=5
        )
        default_caller_id = serializers.IntegerField(
            allow_null=True, min_value=1, max_value=MAX_ID, help_text="an approved caller ID"
        )

    @extend_schema(operation_id="sip_accounts_retrieve", responses=SipAccountOutput)
    def get(self, request, account_id: int):
        account = selectors.sip_account_get(tenant=request_tenant(request), account_id=account_id)
        return Response(SipAccountOutput(account).data, headers={"ETag": etag_of(account)})

    @extend_schema(
        operation_id="sip_accounts_update",
        request=UpdateInput,
        responses=SipAccountOutput,
        parameters=[IF_MATCH],
    )
    def patch(self, request, account_id: int):
        data = validated(self.UpdateInput, request.data, partial=True)
        tenant = request_tenant(request)
        with transaction.atomic():
            account = _locked_account(tenant, account_id)
            check_if_match(request, account)
            services.sip_account_update(account=account, data=dict(data))
        account = selectors.sip_account_get(tenant=tenant, account_id=account_id)
        return Response(SipAccountOutput(account).data, headers={"ETag": etag_of(account)})


def _locked_account(tenant, account_id: int) -> SipAccount:
    """The account, row-locked for a read-check-write (If-Match), tenancy checked first."""
    selectors.sip_account_get(tenant=tenant, account_id=account_id)
    return SipAccount.objects.select_for_update().select_related("customer").get(pk=account_id)


class SipAccountResetPasswordApi(APIView):
    """Set a new generated password; the answer shows it once."""

    @extend_schema(
        operation_id="sip_accounts_reset_password",
        request=None,
        responses=SipAccountWithPassword,
        parameters=[IF_MATCH],
    )
    def post(self, request, account_id: int):
        tenant = request_tenant(request)
        with transaction.atomic():
            account = _locked_account(tenant, account_id)
            check_if_match(request, account)
            issued = services.sip_account_set_password(account=account)
        return Response(_issued(issued), headers={"ETag": etag_of(issued.account)})


class SipAccountRequirePasswordChangeApi(APIView):
    """Staff: make the account's phones fail (403) until its password is reset, or lift that."""

    permission_classes = [IsStaffTenant]

    class Input(serializers.Serializer):
        required = serializers.BooleanField(default=True)

    @extend_schema(
        operation_id="sip_accounts_require_password_change",
        request=Input,
        responses=SipAccountOutput,
        parameters=[IF_MATCH],
    )
    def post(self, request, account_id: int):
        data = validated(self.Input, request.data)
        tenant = request_tenant(request)
        with transaction.atomic():
            account = _locked_account(tenant, account_id)
            check_if_match(request, account)
            services.sip_account_require_password_change(account=account, required=data["required"])
        account = selectors.sip_account_get(tenant=tenant, account_id=account_id)
        return Response(SipAccountOutput(account).data, headers={"ETag": etag_of(account)})


class SipAccountCodecsApi(APIView):
    """The account's codecs, in preference order (first is preferred)."""

    class Codecs(serializers.Serializer):
        codecs = serializers.ListField(
            child=serializers.ChoiceField(choices=Codec.choices), min_length=1, max_length=len(Codec.values)
        )

    @extend_schema(operation_id="sip_accounts_codecs_retrieve", responses=Codecs)
    def get(self, request, account_id: int):
        account = selectors.sip_account_get(tenant=request_tenant(request), account_id=account_id)
        return Response(
            {"codecs": selectors.sip_account_codecs(account=account)}, headers={"ETag": etag_of(account)}
        )

    @extend_schema(
        operation_id="sip_accounts_codecs_update", request=Codecs, responses=Codecs, parameters=[IF_MATCH]
    )
    def put(self, request, account_id: int):
        data = validated(self.Codecs, request.data)
        tenant = request_tenant(request)
        with transaction.atomic():
            account = _locked_account(tenant, account_id)
            check_if_match(request, account)
            codecs = services.sip_account_set_codecs(account=account, codecs=data["codecs"])
        return Response({"codecs": codecs}, headers={"ETag": etag_of(account)})


class SipAccountVoicemailApi(APIView):
    """The account's mailbox counts, for an external voicemail system to keep current.

    Phones subscribed to the account's message-summary hear of every change from the SIP
    service (their message-waiting lamp); writing the counts it already has notifies nobody.
    """

    class Counts(serializers.Serializer):
        new = serializers.IntegerField(min_value=0, max_value=MAX_VOICEMAIL_MESSAGES, help_text="unheard")
        old = serializers.IntegerField(min_value=0, max_value=MAX_VOICEMAIL_MESSAGES, help_text="saved")

    @staticmethod
    def _counts(account: SipAccount) -> dict:
        return {"new": account.voicemail_new, "old": account.voicemail_old}

    @extend_schema(operation_id="sip_accounts_voicemail_retrieve", responses=Counts)
    def get(self, request, account_id: int):
        account = selectors.sip_account_get(tenant=request_tenant(request), account_id=account_id)
        return Response(self._counts(account), headers={"ETag": etag_of(account)})

    @extend_schema(
        operation_id="sip_accounts_voicemail_update", request=Counts, responses=Counts, parameters=[IF_MATCH]
    )
    def put(self, request, account_id: int):
        data = validated(self.Counts, request.data)
        with transaction.atomic():
            account = _locked_account(request_tenant(request), account_id)
            check_if_match(request, account)
            services.sip_account_set_voicemail(account=account, new=data["new"], old=data["old"])
        return Response(self._counts(account), headers={"ETag": etag_of(account)})


# --- caller IDs -----------------------------------------------------------------------------


class CallerIdOutput(serializers.ModelSerializer):
    class Meta:
        model = CallerId
        fields = ["id", "customer", "number", "status", "requested_at", "decided_at", "decision_note"]


CALLER_ID_ORDERING = {"number": ("number", "id"), "requested_at": ("requested_at", "id")}


class CallerIdCollectionApi(APIView):
    """Caller IDs: list the tenant's, and request a new one (staff approve it before use)."""

    pagination_class = Pagination

    class Filter(serializers.Serializer):
        status = serializers.ChoiceField(choices=CallerIdStatus.choices, required=False)
        customer = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="staff: one customer's"
        )
        ordering = serializers.ChoiceField(choices=ordering_choices(CALLER_ID_ORDERING), required=False)

    class CreateInput(serializers.Serializer):
        customer = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="required for staff"
        )
        number = serializers.CharField(max_length=32, help_text="national (0115550100) or +E.164")

    @extend_schema(operation_id="caller_ids_list", parameters=[Filter], responses=CallerIdOutput(many=True))
    def get(self, request):
        params = query(self.Filter, request)
        caller_ids = selectors.caller_id_list(tenant=request_tenant(request), status=params.get("status"))
        if params.get("customer"):
            caller_ids = caller_ids.filter(customer_id=params["customer"])
        caller_ids = ordered(caller_ids, params.get("ordering"), CALLER_ID_ORDERING, "number")
        return paginated(self, request, caller_ids, CallerIdOutput)

    @extend_schema(operation_id="caller_ids_create", request=CreateInput, responses={201: CallerIdOutput})
    def post(self, request):
        data = validated(self.CreateInput, request.data)
        customer = _customer_for_write(request, data.get("customer"))
        caller_id = services.caller_id_request(
            customer=customer, number=data["number"], requested_by=acting_user(request)
        )
        return Response(CallerIdOutput(caller_id).data, status=status.HTTP_201_CREATED)


class CallerIdDetailApi(APIView):
    @extend_schema(operation_id="caller_ids_retrieve", responses=CallerIdOutput)
    def get(self, request, caller_id_id: int):
        caller_id = selectors.caller_id_get(tenant=request_tenant(request), caller_id_id=caller_id_id)
        return Response(CallerIdOutput(caller_id).data)


class CallerIdApproveApi(APIView):
    """Staff: approve a requested caller ID."""

    permission_classes = [IsStaffTenant]

    @extend_schema(operation_id="caller_ids_approve", request=None, responses=CallerIdOutput)
    def post(self, request, caller_id_id: int):
        caller_id = selectors.caller_id_get(tenant=request_tenant(request), caller_id_id=caller_id_id)
        by = acting_user(request)
        if by is None:
            raise PermissionDenied("Only the provider's staff can approve or reject caller IDs.")
        return Response(CallerIdOutput(services.caller_id_approve(caller_id=caller_id, by=by)).data)


class CallerIdRejectApi(APIView):
    """Staff: reject a caller ID (accounts presenting it fall back to no default)."""

    permission_classes = [IsStaffTenant]

    class Input(serializers.Serializer):
        note = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)

    @extend_schema(operation_id="caller_ids_reject", request=Input, responses=CallerIdOutput)
    def post(self, request, caller_id_id: int):
        data = validated(self.Input, request.data)
        caller_id = selectors.caller_id_get(tenant=request_tenant(request), caller_id_id=caller_id_id)
        by = acting_user(request)
        if by is None:
            raise PermissionDenied("Only the provider's staff can approve or reject caller IDs.")
        decided = services.caller_id_reject(caller_id=caller_id, by=by, note=data["note"])
        return Response(CallerIdOutput(decided).data)


# --- API keys (staff) -----------------------------------------------------------------------


class ApiKeyOutput(serializers.ModelSerializer):
    is_staff = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "customer",
            "user",
            "is_staff",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]


class ApiKeyCollectionApi(APIView):
    """Staff: list API keys, and create one (its plaintext is in this answer only)."""

    pagination_class = Pagination

    permission_classes = [IsStaffTenant]

    class Filter(serializers.Serializer):
        customer = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
        active = serializers.BooleanField(required=False, allow_null=True, default=None)

    class CreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        customer = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=1,
            max_value=MAX_ID,
            help_text="the customer; none for a staff key",
        )

    @extend_schema(operation_id="api_keys_list", parameters=[Filter], responses=ApiKeyOutput(many=True))
    def get(self, request):
        params = query(self.Filter, request)
        keys = api_keys.api_key_list(tenant=request_tenant(request))
        if params.get("customer"):
            keys = keys.filter(customer_id=params["customer"])
        if params.get("active") is not None:
            keys = keys.filter(revoked_at__isnull=params["active"])
        return paginated(self, request, keys.order_by("-created_at", "-id"), ApiKeyOutput)

    @extend_schema(
        operation_id="api_keys_create",
        request=CreateInput,
        responses={
            201: inline_serializer(
                "ApiKeyCreated",
                fields={"api_key": ApiKeyOutput(), "key": serializers.CharField(help_text="shown once")},
            )
        },
    )
    def post(self, request):
        data = validated(self.CreateInput, request.data)
        tenant = request_tenant(request)
        customer = None
        if data.get("customer"):
            customer = selectors.customer_get(tenant=tenant, customer_id=data["customer"])
        user = None if customer else acting_user(request)
        issued = api_keys.api_key_create(name=data["name"], customer=customer, user=user)
        return Response(
            {"api_key": ApiKeyOutput(issued.key).data, "key": issued.plaintext},
            status=status.HTTP_201_CREATED,
        )


class ApiKeyRevokeApi(APIView):
    permission_classes = [IsStaffTenant]

    @extend_schema(operation_id="api_keys_revoke", request=None, responses=ApiKeyOutput)
    def post(self, request, key_id: int):
        key = api_keys.api_key_get(tenant=request_tenant(request), key_id=key_id)
        return Response(ApiKeyOutput(api_keys.api_key_revoke(key=key)).data)

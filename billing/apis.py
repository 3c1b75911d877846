"""REST API for money: balance, ledger, credit loads (idempotent), rates and call records.

Credit loads honour `Idempotency-Key`: the first request with a key answers 201; the same key
with the same body answers 200 with the same entry; the same key with another body 409.
(`billing.services.credit_load` keeps the guarantee in the database: the key is unique.)
"""

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors as account_selectors
from billing import selectors, services
from billing.choices import CallDisposition, EntryKind
from billing.models import CallRecord, LedgerEntry, Rate, RatePlan
from portal.api import (
    MAX_ID,
    IsStaffTenant,
    Pagination,
    acting_user,
    filtered,
    ordered,
    ordering_choices,
    paginated,
    query,
    request_tenant,
    validated,
)
from portal.errors import ApplicationError, Conflict, NotFound, PermissionDenied
from portal.tenancy import Tenant, scope
from sipsync import selectors as sync_selectors

MONEY = {"max_digits": 14, "decimal_places": 4}


# Reads that billing.selectors does not offer yet (rates, call records), tenant-scoped the same way.
def _rate_list(*, tenant: Tenant) -> QuerySet[Rate]:
    if not tenant.is_staff:
        return Rate.objects.none()
    return Rate.objects.select_related("plan")


def _call_record_list(*, tenant: Tenant) -> QuerySet[CallRecord]:
    return scope(CallRecord.objects.all(), tenant)


# --- balance and ledger ---------------------------------------------------------------------


class BalanceOutput(serializers.Serializer):
    customer = serializers.IntegerField()
    balance = serializers.DecimalField(**MONEY, help_text="the sum of the ledger")
    reserved = serializers.DecimalField(
        **MONEY, help_text="credit held by calls in progress, as the SIP service last reported it"
    )
    available = serializers.DecimalField(
        **MONEY, help_text="balance less reserved: what calls may still spend"
    )
    calls_in_progress = serializers.IntegerField()
    reserved_reported_at = serializers.DateTimeField(
        allow_null=True, help_text="when the SIP service reported the calls in progress (null: none)"
    )
    currency = serializers.CharField()


class CustomerBalanceApi(APIView):
    """The customer's balance (the sum of its ledger) and available credit (the balance less
    what calls in progress hold)."""

    @extend_schema(operation_id="customers_balance", responses=BalanceOutput)
    def get(self, request, customer_id: int):
        customer = account_selectors.customer_get(tenant=request_tenant(request), customer_id=customer_id)
        in_use = sync_selectors.credit_in_use(customer=customer)
        balance = selectors.customer_balance(customer=customer)
        return Response(
            BalanceOutput(
                {
                    "customer": customer.pk,
                    "balance": balance,
                    "reserved": in_use.reserved,
                    "available": selectors.available_credit(
                        customer=customer, reserved=in_use.reserved, balance=balance
                    ),
                    "calls_in_progress": in_use.calls,
                    "reserved_reported_at": in_use.reported_at,
                    "currency": customer.currency,
                }
            ).data
        )


class LedgerEntryOutput(serializers.ModelSerializer):
    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "customer",
            "kind",
            "amount",
            "currency",
            "reference",
            "note",
            "call_record",
            "reverses",
            "created_at",
        ]


LEDGER_ORDERING = {"created_at": ("created_at", "id")}


class CustomerLedgerApi(APIView):
    """The customer's ledger entries, newest first."""

    pagination_class = Pagination

    class Filter(serializers.Serializer):
        kind = serializers.ChoiceField(choices=EntryKind.choices, required=False)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        ordering = serializers.ChoiceField(choices=ordering_choices(LEDGER_ORDERING), required=False)

    @extend_schema(
        operation_id="customers_ledger", parameters=[Filter], responses=LedgerEntryOutput(many=True)
    )
    def get(self, request, customer_id: int):
        params = query(self.Filter, request)
        tenant = request_tenant(request)
        customer = account_selectors.customer_get(tenant=tenant, customer_id=customer_id)
        entries = filtered(
            selectors.ledger_list(tenant=tenant).filter(customer=customer),
            params,
            {"kind": "kind", "since": "created_at__gte", "until": "created_at__lt"},
        )
        entries = ordered(entries, params.get("ordering"), LEDGER_ORDERING, "-created_at")
        return paginated(self, request, entries, LedgerEntryOutput)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="1 to 100 characters without spaces, unique per load: a retry with the same key and "
    "body returns the first result (200); the same key with another body is refused (409).",
)


class CreditLoadApi(APIView):
    """Staff: load prepaid credit onto a customer (idempotent through `Idempotency-Key`)."""

    permission_classes = [IsStaffTenant]

    class Input(serializers.Serializer):
        amount = serializers.DecimalField(
            max_digits=11, decimal_places=4, min_value=0, coerce_to_string=False
        )
        reference = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
        note = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)

    @extend_schema(
        operation_id="customers_credit_loads_create",
        request=Input,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: LedgerEntryOutput, 200: LedgerEntryOutput},
    )
    def post(self, request, customer_id: int):
        data = validated(self.Input, request.data)
        key = request.headers.get("Idempotency-Key", "")
        customer = account_selectors.customer_get(tenant=request_tenant(request), customer_id=customer_id)
        by = acting_user(request)
        if by is None:
            raise PermissionDenied("Only the provider's staff can change a customer's credit.")
        existed = bool(key.strip()) and LedgerEntry.objects.filter(idempotency_key=key.strip()).exists()
        try:
            entry = services.credit_load(
                customer=customer,
                amount=data["amount"],
                by=by,
                idempotency_key=key,
                reference=data["reference"],
                note=data["note"],
            )
        except Conflict as exc:
            exc.field_errors = {}  # the key is a header, not a body field
            raise
        except ApplicationError as exc:
            if "idempotency_key" in exc.field_errors:
                exc.message = "Send an Idempotency-Key header: " + exc.message
                exc.field_errors = {"Idempotency-Key": exc.field_errors["idempotency_key"]}
            raise
        if existed and entry.note != data["note"].strip()[:300]:
            raise Conflict(
                "This idempotency key was already used for a different entry.", code="idempotency_conflict"
            )
        return Response(
            LedgerEntryOutput(entry).data, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        )


# --- rates ----------------------------------------------------------------------------------


class RateOutput(serializers.ModelSerializer):
    plan_name = serializers.CharField(source="plan.name")

    class Meta:
        model = Rate
        fields = [
            "id",
            "plan",
            "plan_name",
            "prefix",
            "description",
            "price_per_minute",
            "connect_fee",
            "first_increment",
            "next_increment",
            "effective_from",
            "effective_to",
        ]


RATE_ORDERING = {
    "prefix": ("plan_id", "prefix", "-effective_from"),
    "effective_from": ("effective_from", "id"),
}


class RateListApi(APIView):
    """Staff: the rate tables (`?plan=`, `?prefix=` for the rates a number could match)."""

    pagination_class = Pagination

    permission_classes = [IsStaffTenant]

    class Filter(serializers.Serializer):
        plan = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
        prefix = serializers.RegexField(
            r"^[0-9]{1,15}$", required=False, help_text="digits a prefix starts with"
        )
        ordering = serializers.ChoiceField(choices=ordering_choices(RATE_ORDERING), required=False)

    @extend_schema(operation_id="rates_list", parameters=[Filter], responses=RateOutput(many=True))
    def get(self, request):
        params = query(self.Filter, request)
        rates = _rate_list(tenant=request_tenant(request))
        if params.get("plan"):
            rates = rates.filter(plan_id=params["plan"])
        if params.get("prefix"):
            rates = rates.filter(prefix__startswith=params["prefix"])
        rates = ordered(rates, params.get("ordering"), RATE_ORDERING, "prefix")
        return paginated(self, request, rates, RateOutput)


class RatesImportApi(APIView):
    """Staff: replace a rate plan's table from a CSV text, from now or a future time.

    Columns: prefix, description, price_per_minute[, connect_fee, first_increment, next_increment].
    All or nothing: any bad row refuses the whole file, each bad row named in `fields.csv`.
    """

    permission_classes = [IsStaffTenant]

    class Input(serializers.Serializer):
        csv = serializers.CharField(max_length=20 * 1024 * 1024, trim_whitespace=False)
        effective_from = serializers.DateTimeField(required=False, help_text="default: now")

    class Output(serializers.Serializer):
        plan = serializers.CharField()
        effective_from = serializers.DateTimeField()
        created = serializers.IntegerField(help_text="rates imported")
        closed = serializers.IntegerField(help_text="rates in effect before, now ending at effective_from")
        superseded = serializers.IntegerField(help_text="scheduled rates that never took effect, removed")

    @extend_schema(operation_id="rate_plans_import", request=Input, responses={201: Output})
    def post(self, request, plan_id: int):
        data = validated(self.Input, request.data)
        plan = RatePlan.objects.filter(pk=plan_id).first()
        if plan is None:
            raise NotFound("No such rate plan.")
        by = acting_user(request)
        if by is None:
            raise PermissionDenied("Only the provider's staff can change rates.")
        try:
            result = services.rates_import(
                plan=plan, file=data["csv"], by=by, effective_from=data.get("effective_from")
            )
        except ApplicationError as exc:
            if "file" in exc.field_errors:
                exc.field_errors = {"csv": exc.field_errors.pop("file"), **exc.field_errors}
            raise
        return Response(self.Output(result).data, status=status.HTTP_201_CREATED)


# --- call records ---------------------------------------------------------------------------


class CallRecordOutput(serializers.ModelSerializer):
    class Meta:
        model = CallRecord
        fields = [
            "id",
            "record_id",
            "customer",
            "sip_account",
            "caller",
            "dialled_number",
            "normalised_number",
            "invited_at",
            "answered_at",
            "ended_at",
            "duration_seconds",
            "disposition",
            "final_code",
            "cause",
            "cost",
            "rated",
        ]


CALL_ORDERING = {"invited_at": ("invited_at", "id"), "duration": ("duration_seconds", "id")}


class CallRecordListApi(APIView):
    """Call records of the tenant, newest first; filter by account, date range and disposition."""

    pagination_class = Pagination

    class Filter(serializers.Serializer):
        account = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="a SIP account id"
        )
        customer = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="staff: one customer's"
        )
        since = serializers.DateTimeField(required=False, help_text="invited at or after")
        until = serializers.DateTimeField(required=False, help_text="invited before")
        disposition = serializers.ChoiceField(choices=CallDisposition.choices, required=False)
        ordering = serializers.ChoiceField(choices=ordering_choices(CALL_ORDERING), required=False)

        def validate(self, attrs):
            if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
                raise serializers.ValidationError({"until": ["Must be after 'since'."]})
            return attrs

    @extend_schema(
        operation_id="call_records_list", parameters=[Filter], responses=CallRecordOutput(many=True)
    )
    def get(self, request):
        params = query(self.Filter, request)
        records = filtered(
            _call_record_list(tenant=request_tenant(request)),
            params,
            {
                "account": "sip_account_id",
                "customer": "customer_id",
                "since": "invited_at__gte",
                "until": "invited_at__lt",
                "disposition": "disposition",
            },
        )
        records = ordered(records, params.get("ordering"), CALL_ORDERING, "-invited_at")
        return paginated(self, request, records, CallRecordOutput)

"""REST API for what the SIP service nodes know: live registrations, provisioning status and the
rejection events collected from them (diagnostics). Read-only; every read is tenant-scoped.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors as account_selectors
from portal.api import (
    MAX_ID,
    Pagination,
    filtered,
    ordered,
    ordering_choices,
    paginated,
    query,
    request_tenant,
)
from sipsync import live, selectors
from sipsync.models import ProvisioningState

# --- registrations --------------------------------------------------------------------------


class BindingOutput(serializers.Serializer):
    """One registered contact, as the node reports it."""

    aor = serializers.CharField(required=False)
    contact = serializers.CharField(required=False)
    expires_in = serializers.IntegerField(required=False, allow_null=True)
    expires_at = serializers.CharField(required=False, allow_null=True)
    q = serializers.FloatField(required=False, allow_null=True)
    source_ip = serializers.CharField(required=False, allow_null=True)
    source_port = serializers.IntegerField(required=False, allow_null=True)
    transport = serializers.CharField(required=False, allow_null=True)
    user_agent = serializers.CharField(required=False, allow_null=True)
    instance_id = serializers.CharField(required=False, allow_null=True)
    registered_at = serializers.CharField(required=False, allow_null=True)


class NodeAnswerOutput(serializers.Serializer):
    """One node's part of a live answer (the list itself is added by each endpoint)."""

    node = serializers.CharField(help_text="the node's control URL")
    ok = serializers.BooleanField(help_text="false when the node could not be asked")
    error = serializers.CharField(allow_blank=True, help_text="why the node could not be asked")


class NodeRegistrationsOutput(NodeAnswerOutput):
    registrations = BindingOutput(many=True)


class RegistrationsOutput(serializers.Serializer):
    account = serializers.IntegerField()
    aor = serializers.CharField()
    nodes = NodeRegistrationsOutput(many=True)


class _LiveAccountApi(APIView):
    """What every SIP node knows about one account right now; a node that is down is listed
    with `ok: false` and the reason, and the others still answer."""

    ask = staticmethod(live.registrations)
    key = "registrations"
    output: type[serializers.Serializer] = RegistrationsOutput

    def get(self, request, account_id: int):
        account = account_selectors.sip_account_get(tenant=request_tenant(request), account_id=account_id)
        aor = f"{account.username}@{account.realm}"
        nodes = [{"node": a.node, "ok": a.ok, "error": a.error, self.key: a.items} for a in self.ask(aor)]
        return Response(self.output({"account": account.pk, "aor": aor, "nodes": nodes}).data)


@extend_schema_view(
    get=extend_schema(operation_id="sip_accounts_registrations", responses=RegistrationsOutput)
)
class SipAccountRegistrationsApi(_LiveAccountApi):
    """The account's live registrations, asked of every SIP node now."""


# --- subscriptions --------------------------------------------------------------------------


class SubscriptionOutput(serializers.Serializer):
    """One event subscription, as the node reports it."""

    id = serializers.CharField(required=False)
    event = serializers.CharField(required=False, help_text="message-summary (MWI) or dialog (BLF)")
    subscriber = serializers.CharField(required=False, help_text="the subscribing account's AOR")
    target = serializers.CharField(required=False, help_text="the watched account's AOR")
    contact = serializers.CharField(required=False, allow_null=True)
    source = serializers.CharField(required=False, allow_null=True)
    transport = serializers.CharField(required=False, allow_null=True)
    expires_at = serializers.FloatField(required=False, allow_null=True, help_text="Unix time")


class NodeSubscriptionsOutput(NodeAnswerOutput):
    subscriptions = SubscriptionOutput(many=True)


class SubscriptionsOutput(serializers.Serializer):
    account = serializers.IntegerField()
    aor = serializers.CharField()
    nodes = NodeSubscriptionsOutput(many=True)


@extend_schema_view(
    get=extend_schema(operation_id="sip_accounts_subscriptions", responses=SubscriptionsOutput)
)
class SipAccountSubscriptionsApi(_LiveAccountApi):
    """The account's active event subscriptions (message-waiting, busy lamps), asked of every
    SIP node now: those its phones hold and those other phones hold on it."""

    ask = staticmethod(live.subscriptions)
    key = "subscriptions"
    output = SubscriptionsOutput


# --- provisioning ---------------------------------------------------------------------------


class NodeProvisioningOutput(serializers.Serializer):
    node = serializers.CharField()
    state = serializers.ChoiceField(choices=ProvisioningState.choices)
    applied_version = serializers.IntegerField(allow_null=True)
    current_version = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class SipAccountProvisioningApi(APIView):
    """Whether each SIP node holds the account's current settings."""

    @extend_schema(operation_id="sip_accounts_provisioning", responses=NodeProvisioningOutput(many=True))
    def get(self, request, account_id: int):
        statuses = selectors.account_provisioning(tenant=request_tenant(request), account_id=account_id)
        return Response(NodeProvisioningOutput(statuses, many=True).data)


class ProvisioningStatusOutput(serializers.Serializer):
    account = serializers.IntegerField(source="account_id")
    customer = serializers.IntegerField(source="account.customer_id")
    extension = serializers.CharField(source="account.extension")
    node = serializers.CharField()
    state = serializers.ChoiceField(choices=ProvisioningState.choices)
    applied_version = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    updated_at = serializers.DateTimeField()


class ProvisioningStatusListApi(APIView):
    """Per-node provisioning of the tenant's accounts, e.g. `?state=failing` for what is stuck."""

    pagination_class = Pagination

    class Filter(serializers.Serializer):
        state = serializers.ChoiceField(choices=ProvisioningState.choices, required=False)
        account = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)

    @extend_schema(
        operation_id="provisioning_list", parameters=[Filter], responses=ProvisioningStatusOutput(many=True)
    )
    def get(self, request):
        params = query(self.Filter, request)
        statuses = selectors.provisioning_status_list(
            tenant=request_tenant(request), state=params.get("state")
        )
        if params.get("account"):
            statuses = statuses.filter(account_id=params["account"])
        return paginated(self, request, statuses, ProvisioningStatusOutput)


# --- rejection events -----------------------------------------------------------------------


class SipEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    node = serializers.CharField()
    node_name = serializers.CharField()
    kind = serializers.CharField()
    time = serializers.DateTimeField(allow_null=True)
    method = serializers.CharField()
    code = serializers.IntegerField(allow_null=True)
    reason_phrase = serializers.CharField()
    cause = serializers.CharField()
    aor = serializers.CharField()
    account = serializers.IntegerField(source="account_id", allow_null=True)
    customer = serializers.IntegerField(source="customer_id", allow_null=True)
    source_ip = serializers.CharField()
    source_port = serializers.IntegerField(allow_null=True)
    user_agent = serializers.CharField()
    call_id = serializers.CharField()


EVENT_ORDERING = {"time": ("time", "id")}


class RejectionEventListApi(APIView):
    """Requests the SIP nodes refused (401/403/...), newest first: why a phone fails to register."""

    pagination_class = Pagination

    class Filter(serializers.Serializer):
        account = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
        code = serializers.IntegerField(required=False, min_value=100, max_value=699)
        cause = serializers.CharField(required=False, max_length=64)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        ordering = serializers.ChoiceField(choices=ordering_choices(EVENT_ORDERING), required=False)

    @extend_schema(
        operation_id="rejection_events_list", parameters=[Filter], responses=SipEventOutput(many=True)
    )
    def get(self, request):
        params = query(self.Filter, request)
        events = filtered(
            selectors.sip_event_list(tenant=request_tenant(request), account_id=params.get("account")),
            params,
            {"code": "code", "cause": "cause", "since": "time__gte", "until": "time__lt"},
        )
        events = ordered(events, params.get("ordering"), EVENT_ORDERING, "-time")
        return paginated(self, request, events, SipEventOutput)

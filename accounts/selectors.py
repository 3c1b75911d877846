"""Reads for customers, SIP accounts and caller IDs, always narrowed by the asking tenant."""

from django.db.models import Prefetch, Q, QuerySet

from accounts.choices import CallerIdStatus
from accounts.models import CallerId, Customer, SipAccount, SipAccountCodec
from portal.errors import NotFound
from portal.tenancy import Tenant, scope


def customer_list(*, tenant: Tenant) -> QuerySet[Customer]:
    if tenant.is_staff:
        return Customer.objects.all()
    return Customer.objects.filter(pk=tenant.customer_id)


def customer_get(*, tenant: Tenant, customer_id: int) -> Customer:
    customer = customer_list(tenant=tenant).filter(pk=customer_id).first()
    if customer is None:
        raise NotFound("No such customer.")
    return customer


def sip_account_list(*, tenant: Tenant, search: str = "") -> QuerySet[SipAccount]:
    accounts = scope(SipAccount.objects.all(), tenant).select_related("customer", "default_caller_id")
    accounts = accounts.prefetch_related(
        Prefetch("codec_assignments", queryset=SipAccountCodec.objects.order_by("position"))
    )
    search = search.strip()
    if search:
        accounts = accounts.filter(
            Q(extension__startswith=search) | Q(username__icontains=search) | Q(label__icontains=search)
        )
    return accounts.order_by("customer_id", "extension")


def sip_account_get(*, tenant: Tenant, account_id: int) -> SipAccount:
    account = sip_account_list(tenant=tenant).filter(pk=account_id).first()
    if account is None:
        raise NotFound("No such SIP account.")
    return account


def sip_account_codecs(*, account: SipAccount) -> list[str]:
    """The account's codecs in preference order (uses a prefetch when there is one)."""
    return [
        assignment.codec for assignment in sorted(account.codec_assignments.all(), key=lambda a: a.position)
    ]


def sip_account_codecs_by_account(*, account_ids: list[int]) -> dict[int, list[str]]:
    """Codecs of many accounts in preference order, read as plain values (for a page of a list,
    where building a codec object per row costs more than the rest of the page)."""
    codecs: dict[int, list[str]] = {pk: [] for pk in account_ids}
    rows = SipAccountCodec.objects.filter(account_id__in=account_ids).order_by("account_id", "position")
    for account_id, codec in rows.values_list("account_id", "codec"):
        codecs[account_id].append(codec)
    return codecs


def caller_id_list(*, tenant: Tenant, status: str | None = None) -> QuerySet[CallerId]:
    caller_ids = scope(CallerId.objects.all(), tenant).select_related("customer")
    if status:
        caller_ids = caller_ids.filter(status=status)
    return caller_ids


def caller_id_get(*, tenant: Tenant, caller_id_id: int) -> CallerId:
    caller_id = caller_id_list(tenant=tenant).filter(pk=caller_id_id).first()
    if caller_id is None:
        raise NotFound("No such caller ID.")
    return caller_id


def approved_caller_ids(*, tenant: Tenant) -> QuerySet[CallerId]:
    return caller_id_list(tenant=tenant, status=CallerIdStatus.APPROVED)

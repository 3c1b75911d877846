"""Provisioning documents: what the SIP service needs to enforce, built from the portal's rows.

One function per kind. A document carries HA1 digests and never a password or anything else
secret; the version comes from `sipsync.models.DocumentVersion` (see `sipsync.outbox`).
Shapes are the node's control contract (`sipsync.server.accounts.Account.from_document` for
accounts).
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Prefetch
from django.utils import timezone

from accounts.choices import DEFAULT_CODECS, CallerIdStatus, CustomerStatus
from accounts.models import CallerId, Customer, SipAccount, SipAccountCodec
from billing.models import Rate, RatePlan
from billing.selectors import customer_balance, customer_document_billing
from sipsync.models import DocumentKind, DocumentVersion


def account_document(
    account: SipAccount, *, version: int, approved_caller_ids: list[str] | None = None
) -> dict:
    """The account document. `approved_caller_ids` may be passed when building many at once."""
    customer = account.customer
    if approved_caller_ids is None:
        approved_caller_ids = approved_numbers(customer)
    codecs = [a.codec for a in sorted(account.codec_assignments.all(), key=lambda a: a.position)]
    if not codecs:  # a row written around the services: the product's default, as the node's
        codecs = [str(codec) for codec in DEFAULT_CODECS]
    default = account.default_caller_id
    default_number = (
        default.number
        if default is not None
        and default.status == CallerIdStatus.APPROVED
        and default.number in approved_caller_ids
        else None
    )
    return {
        "kind": "account",
        "version": version,
        "username": account.username,
        "realm": account.realm,
        "customer": customer.account_number,
        "extension": account.extension,
        "ha1_md5": account.ha1_md5,
        "ha1_sha256": account.ha1_sha256,
        "enabled": account.enabled and customer.status == CustomerStatus.ACTIVE,
        "password_change_required": account.password_change_required,
        "codecs": codecs,
        "caller_ids": list(approved_caller_ids),
        "default_caller_id": default_number,
        "permissions": account.call_classes,
        "max_calls": account.max_concurrent_calls,
        "max_contacts": account.max_contacts,
        "forward_all": account.forward_all_to or None,
        "dnd": account.do_not_disturb,
        "mailbox": {"new": account.voicemail_new, "old": account.voicemail_old},
    }


def customer_document(customer: Customer, *, version: int, balance: Decimal | None = None) -> dict:
    if balance is None:
        balance = customer_balance(customer=customer)
    plan = customer.rate_plan or RatePlan.objects.filter(is_default=True).first()
    return {
        "kind": "customer",
        "customer": customer.account_number,
        "version": version,
        "status": customer.status,
        "currency": customer.currency,
        "balance": f"{balance.quantize(Decimal('0.0001'))}",
        "country_code": customer.country_code,
        "national_prefix": customer.national_prefix,
        "rate_plan": plan.name if plan is not None else None,
        **customer_document_billing(customer=customer),
    }


def rate_plan_document(plan: RatePlan, *, version: int) -> dict:
    """The plan's rates that are current or still to come (expired ones are left out)."""
    now = timezone.now()
    rates = [
        rate
        for rate in plan.rates.order_by("prefix", "effective_from")
        if rate.effective_to is None or rate.effective_to > now
    ]
    return {
        "kind": "rates",
        "plan": plan.name,
        "version": version,
        "currency": plan.currency,
        "rates": [_rate(rate) for rate in rates],
    }


def approved_numbers(customer: Customer) -> list[str]:
    return list(
        CallerId.objects.filter(customer=customer, status=CallerIdStatus.APPROVED)
        .order_by("number")
        .values_list("number", flat=True)
    )


def current_version(kind: str, object_id: int) -> int | None:
    return (
        DocumentVersion.objects.filter(kind=kind, object_id=object_id)
        .values_list("version", flat=True)
        .first()
    )


def build_document(kind: str, object_id: int) -> dict | None:
    """The current document of an object, or None when the object (or its version) is gone.

    The version is read before the rows, so the rows are at least as new as the version says.
    """
    version = current_version(kind, object_id)
    if version is None:
        return None
    if kind == DocumentKind.ACCOUNT:
        account = (
            SipAccount.objects.select_related("customer", "default_caller_id")
            .prefetch_related(
                Prefetch("codec_assignments", queryset=SipAccountCodec.objects.order_by("position"))
            )
            .filter(pk=object_id)
            .first()
        )
        return account_document(account, version=version) if account is not None else None
    if kind == DocumentKind.CUSTOMER:
        customer = Customer.objects.select_related("rate_plan").filter(pk=object_id).first()
        return customer_document(customer, version=version) if customer is not None else None
    if kind == DocumentKind.RATE_PLAN:
        plan = RatePlan.objects.filter(pk=object_id).first()
        return rate_plan_document(plan, version=version) if plan is not None else None
    raise ValueError(f"unknown document kind {kind!r}")


def build_documents(kind: str, object_ids: list[int]) -> dict[int, dict | None]:
    """`build_document` for many objects of one kind: accounts with a handful of queries for
    the lot (versions, accounts with their customer and default caller ID, codecs, approved
    caller IDs), the rarer kinds one by one."""
    if kind != DocumentKind.ACCOUNT:
        return {pk: build_document(kind, pk) for pk in object_ids}
    versions = dict(
        DocumentVersion.objects.filter(kind=kind, object_id__in=object_ids).values_list(
            "object_id", "version"
        )
    )
    codecs = Prefetch("codec_assignments", queryset=SipAccountCodec.objects.order_by("position"))
    accounts = {
        account.pk: account
        for account in SipAccount.objects.select_related("customer", "default_caller_id")
        .prefetch_related(codecs)
        .filter(pk__in=list(versions))
    }
    approved: dict[int, list[str]] = {account.customer_id: [] for account in accounts.values()}
    for customer_id, number in (
        CallerId.objects.filter(customer_id__in=list(approved), status=CallerIdStatus.APPROVED)
        .order_by("number")
        .values_list("customer_id", "number")
    ):
        approved[customer_id].append(number)
    built: dict[int, dict | None] = {}
    for pk in object_ids:
        account = accounts.get(pk)
        built[pk] = (
            account_document(account, version=versions[pk], approved_caller_ids=approved[account.customer_id])
            if account is not None
            else None
        )
    return built


def _rate(rate: Rate) -> dict:
    return {
        "prefix": rate.prefix,
        "description": rate.description,
        "price_per_minute": f"{rate.price_per_minute.quantize(Decimal('0.00001'))}",
        "connect_fee": f"{rate.connect_fee.quantize(Decimal('0.00001'))}",
        "first_increment": rate.first_increment,
        "next_increment": rate.next_increment,
        "effective_from": _iso(rate.effective_from),
        "effective_to": _iso(rate.effective_to) if rate.effective_to is not None else None,
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

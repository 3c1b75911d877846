"""Provisioning documents: what the SIP service needs to enforce, built from the portal's rows.

One function per kind. A document carries HA1 digests and never a password or anything else
secret; the version comes from `sipsync.models.DocumentVersion` (see `sipsync.outbox`).
Shapes are the node's control contract (`sipsync.server.accounts.Account.from_document` for
accounts).
"""

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from django.utils import timezone

from accounts.choices import DEFAULT_CODECS, CallerIdStatus, CustomerStatus
from accounts.models import CallerId, Customer, SipAccount, SipAccountCodec
from billing.models import Rate, RatePlan
from billing.selectors import customer_balance, customer_document_billing
from sipsync.models import DocumentKind, DocumentVersion

# The account's columns a document needs, read as values (no model instances: building the
# documents of 10,000 accounts for a fresh node is then a matter of a second, not several).
_ACCOUNT_COLUMNS = (
    "pk", "customer_id", "username", "realm", "extension", "ha1_md5", "ha1_sha256", "enabled",
    "password_change_required", "max_concurrent_calls", "max_contacts", "forward_all_to",
    "do_not_disturb", "voicemail_new", "voicemail_old", *SipAccount.CALL_CLASS_FIELDS.values(),
    "customer__account_number", "customer__status", "default_caller_id__number", "default_caller_id__status",
)  # fmt: skip


def account_document(row: dict, *, version: int, codecs: list[str], approved_caller_ids: list[str]) -> dict:
    """The account document from the account's `_ACCOUNT_COLUMNS`, its codecs in order and its
    customer's approved caller IDs."""
    if not codecs:  # a row written around the services: the product's default, as the node's
        codecs = [str(codec) for codec in DEFAULT_CODECS]
    default_number = row["default_caller_id__number"]
    if (
        row["default_caller_id__status"] != CallerIdStatus.APPROVED
        or default_number not in approved_caller_ids
    ):
        default_number = None
    return {
        "kind": "account",
        "version": version,
        "username": row["username"],
        "realm": row["realm"],
        "customer": row["customer__account_number"],
        "extension": row["extension"],
        "ha1_md5": row["ha1_md5"],
        "ha1_sha256": row["ha1_sha256"],
        "enabled": row["enabled"] and row["customer__status"] == CustomerStatus.ACTIVE,
        "password_change_required": row["password_change_required"],
        "codecs": codecs,
        "caller_ids": list(approved_caller_ids),
        "default_caller_id": default_number,
        "permissions": [str(cls) for cls, column in SipAccount.CALL_CLASS_FIELDS.items() if row[column]],
        "max_calls": row["max_concurrent_calls"],
        "max_contacts": row["max_contacts"],
        "forward_all": row["forward_all_to"] or None,
        "dnd": row["do_not_disturb"],
        "mailbox": {"new": row["voicemail_new"], "old": row["voicemail_old"]},
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
        return _account_documents({object_id: version})[object_id]
    if kind == DocumentKind.CUSTOMER:
        customer = Customer.objects.select_related("rate_plan").filter(pk=object_id).first()
        return customer_document(customer, version=version) if customer is not None else None
    if kind == DocumentKind.RATE_PLAN:
        plan = RatePlan.objects.filter(pk=object_id).first()
        return rate_plan_document(plan, version=version) if plan is not None else None
    raise ValueError(f"unknown document kind {kind!r}")


def build_documents(kind: str, object_ids: list[int]) -> dict[int, dict | None]:
    """`build_document` for many objects of one kind: accounts with four queries for the lot
    (versions, accounts with their customer and default caller ID, codecs, approved caller
    IDs), the rarer kinds one by one."""
    if kind != DocumentKind.ACCOUNT:
        return {pk: build_document(kind, pk) for pk in object_ids}
    versions = dict(
        DocumentVersion.objects.filter(kind=kind, object_id__in=object_ids).values_list(
            "object_id", "version"
        )
    )
    built = _account_documents(versions)
    return {pk: built.get(pk) for pk in object_ids}


def _account_documents(versions: dict[int, int]) -> dict[int, dict | None]:
    """Documents of the accounts in `versions` (id -> version, read before the rows)."""
    rows = list(SipAccount.objects.filter(pk__in=list(versions)).values(*_ACCOUNT_COLUMNS))
    codecs: dict[int, list[str]] = defaultdict(list)
    for account_id, codec in (
        SipAccountCodec.objects.filter(account_id__in=[row["pk"] for row in rows])
        .order_by("account_id", "position")
        .values_list("account_id", "codec")
    ):
        codecs[account_id].append(codec)
    approved: dict[int, list[str]] = {row["customer_id"]: [] for row in rows}
    for customer_id, number in (
        CallerId.objects.filter(customer_id__in=list(approved), status=CallerIdStatus.APPROVED)
        .order_by("number")
        .values_list("customer_id", "number")
    ):
        approved[customer_id].append(number)
    built: dict[int, dict | None] = dict.fromkeys(versions)
    for row in rows:
        built[row["pk"]] = account_document(
            row,
            version=versions[row["pk"]],
            codecs=codecs.get(row["pk"], []),
            approved_caller_ids=approved[row["customer_id"]],
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

"""Reads for money. A balance is always the sum of the ledger, never a stored figure."""

from decimal import Decimal

from django.db.models import QuerySet, Sum

from billing.models import LedgerEntry
from portal.tenancy import Tenant, scope


def customer_balance(*, customer) -> Decimal:
    total = LedgerEntry.objects.filter(customer=customer).aggregate(total=Sum("amount"))["total"]
    return (total or Decimal("0")).quantize(Decimal("0.0001"))


def ledger_list(*, tenant: Tenant) -> QuerySet[LedgerEntry]:
    return scope(LedgerEntry.objects.all(), tenant).select_related("customer", "created_by")

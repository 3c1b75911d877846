"""Tenancy in one place: every selector narrows its queryset through `scope()`.

A `Tenant` says who is asking: the provider's staff (every customer) or a user of one customer.
"""

from dataclasses import dataclass

from django.db.models import QuerySet

from portal.errors import PermissionDenied


@dataclass(frozen=True, slots=True)
class Tenant:
    customer_id: int | None
    is_staff: bool = False

    @classmethod
    def staff(cls) -> "Tenant":
        return cls(customer_id=None, is_staff=True)

    @classmethod
    def of_customer(cls, customer) -> "Tenant":
        return cls(customer_id=customer.pk, is_staff=False)


def tenant_of(user) -> Tenant:
    """The tenant a signed-in user acts as; staff see every customer."""
    if not user.is_authenticated or not user.is_active:
        raise PermissionDenied("Sign in to continue.")
    if user.is_staff:
        return Tenant.staff()
    membership = getattr(user, "membership", None)
    if membership is None:
        raise PermissionDenied("This user belongs to no customer.")
    return Tenant(customer_id=membership.customer_id)


def scope(queryset: QuerySet, tenant: Tenant, *, customer_field: str = "customer") -> QuerySet:
    """Narrow `queryset` to the rows `tenant` may see; `customer_field` is the path to the customer."""
    if tenant.is_staff:
        return queryset
    if tenant.customer_id is None:
        return queryset.none()
    return queryset.filter(**{f"{customer_field}_id": tenant.customer_id})

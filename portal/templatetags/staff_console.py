"""Figures the staff console's front page shows above the app list."""

from django import template

from billing import selectors as billing_selectors
from portal.tenancy import Tenant

register = template.Library()


@register.simple_tag
def unrateable_call_records() -> int:
    """Call records kept unrated because no rate matched: staff fix the rates and rate again."""
    return billing_selectors.call_records_unrateable(tenant=Tenant.staff()).count()

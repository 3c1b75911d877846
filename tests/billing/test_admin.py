import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import LedgerEntry
from billing.selectors import customer_balance
from portal.models import AuditAction, AuditLogEntry
from tests.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = StaffFactory(is_superuser=True)
    client.force_login(staff)
    return client


def test_a_credit_load_form_submitted_twice_loads_once(staff_client):
    customer = CustomerFactory()
    page = staff_client.get(reverse("admin:billing_creditload_add"))
    assert page.status_code == 200
    key = re.search(rb'name="submission_key" value="([^"]+)"', page.content).group(1).decode()
    form = {
        "customer": customer.pk,
        "amount": "150.00",
        "reference": "EFT-77",
        "note": "",
        "submission_key": key,
    }
    for _ in range(2):
        response = staff_client.post(reverse("admin:billing_creditload_add"), form)
        assert response.status_code == 302, response.context["adminform"].form.errors
    assert LedgerEntry.objects.count() == 1
    assert customer_balance(customer=customer) == Decimal("150.00")
    [logged] = AuditLogEntry.objects.filter(action=AuditAction.CREDIT_LOADED)
    assert logged.customer_id == customer.pk and Decimal(logged.details["amount"]) == Decimal("150.00")


def test_the_credit_load_form_refuses_bad_amounts(staff_client):
    customer = CustomerFactory()
    form = {"customer": customer.pk, "amount": "-5", "reference": "", "note": "", "submission_key": "k-1"}
    response = staff_client.post(reverse("admin:billing_creditload_add"), form)
    assert response.status_code == 200
    assert b"positive amount" in response.content
    assert not LedgerEntry.objects.exists()


def test_the_ledger_is_read_only_in_the_console(staff_client):
    customer = CustomerFactory()
    form = {"customer": customer.pk, "amount": "10", "reference": "", "note": "", "submission_key": "k-2"}
    staff_client.post(reverse("admin:billing_creditload_add"), form)
    entry = LedgerEntry.objects.get()
    assert staff_client.get(reverse("admin:billing_ledgerentry_add")).status_code == 403
    assert (
        staff_client.post(
            reverse("admin:billing_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    change = staff_client.post(
        reverse("admin:billing_ledgerentry_change", args=[entry.pk]), {"amount": "999"}
    )
    assert change.status_code in (302, 403)
    entry.refresh_from_db()
    assert entry.amount == Decimal("10")

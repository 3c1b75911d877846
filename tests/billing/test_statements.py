import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import selectors, services, statements
from billing.models import LedgerEntry
from tests.billing.conftest import make_record
from tests.factories import CustomerFactory, StaffFactory, customer_user

pytestmark = pytest.mark.django_db


def test_a_statement_adds_up(plan):
    customer, staff = CustomerFactory(), StaffFactory()
    before = services.credit_load(customer=customer, amount="100", by=staff, idempotency_key="before")
    start = _tick()
    load = services.credit_load(
        customer=customer, amount="50", by=staff, idempotency_key="l1", reference="EFT-1"
    )
    for number, duration in [
        ("+27115550100", 61),
        ("+27115550199", 30),
        ("+27821234567", 31),
        ("+442071234567", 7),
    ]:
        services.call_records_rate([make_record(customer, number, duration=duration).pk])
    services.ledger_adjust(customer=customer, amount="-2.5", by=staff, idempotency_key="a1", note="fee")
    services.ledger_reverse(entry=load, by=staff, note="bounced")
    end = _tick()
    services.credit_load(customer=customer, amount="7", by=staff, idempotency_key="after")  # next period
    later = timezone.now() + timedelta(seconds=2)

    statement = statements.statement_build(customer=customer, start=start, end=end)
    assert statement.opening == before.amount == Decimal("100")
    assert [e.reference for e in statement.loads] == ["EFT-1"]
    groups = {(g.prefix, g.description): (g.calls, g.billed_seconds, g.amount) for g in statement.charges}
    assert groups == {
        ("2711", "Johannesburg"): (2, 180, Decimal("-0.9000")),  # 120 s + 60 s at 0.30
        ("278", "South Africa mobile"): (1, 36, Decimal("-0.7200")),
        ("44", "United Kingdom"): (1, 7, Decimal("-0.2050")),  # 0.10 + 0.90 * 7 / 60
    }
    assert [e.kind for e in statement.adjustments] == ["adjustment", "reversal"]
    assert statement.adjustments_total == Decimal("-52.5")
    assert statement.adds_up
    assert statement.closing == Decimal("100") + 50 - Decimal("1.825") - Decimal("52.5")
    assert statement.closing == selectors.customer_balance(customer=customer) - 7
    # Consecutive periods chain: one's closing is the next one's opening.
    following = statements.statement_build(customer=customer, start=end, end=later)
    assert following.opening == statement.closing and following.adds_up
    assert following.closing == selectors.customer_balance(customer=customer)


def _tick():
    """Now, strictly between the entries written before and after (microsecond timestamps)."""
    time.sleep(0.002)
    now = timezone.now()
    time.sleep(0.002)
    return now


def test_the_csv_has_every_line_and_the_totals(plan):
    customer, staff = CustomerFactory(), StaffFactory()
    start = timezone.now()
    services.credit_load(customer=customer, amount="20", by=staff, idempotency_key="l", reference="R-9")
    services.call_records_rate([make_record(customer, "+27115550100", duration=60).pk])
    statement = statements.statement_build(customer=customer, start=start, end=timezone.now() + timedelta(1))
    lines = statements.statement_csv(statement).splitlines()
    assert lines[0].startswith("section,date,description")
    assert lines[1].startswith("opening,") and lines[1].endswith(",0.0000,ZAR")
    assert any(line.startswith("load,") and "R-9" in line and ",20" in line for line in lines)
    assert any(line.startswith("calls,,Johannesburg (2711),,1,60,-0.3000,ZAR") for line in lines)
    assert lines[-1].startswith("closing,") and lines[-1].endswith(",19.7000,ZAR")


def test_month_periods():
    start, end = statements.month_period(date(2026, 12, 15))
    assert (start, end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    start, end = statements.month_period(date(2026, 2, 1))
    assert end - start == timedelta(days=28)


def test_statement_page_and_csv_are_scoped_to_the_tenant(client, plan):
    mine, theirs = CustomerFactory(), CustomerFactory()
    staff = StaffFactory()
    services.credit_load(customer=mine, amount="30", by=staff, idempotency_key="m", reference="MINE-1")
    services.credit_load(customer=theirs, amount="40", by=staff, idempotency_key="t", reference="THEIRS-1")
    user = customer_user(mine)
    client.force_login(user)

    page = client.get(f"/billing/customers/{mine.pk}/statement/")
    assert page.status_code == 200
    assert (
        b"MINE-1" in page.content and b"Opening balance" in page.content and b"THEIRS-1" not in page.content
    )
    csv = client.get(f"/billing/customers/{mine.pk}/statement.csv")
    assert csv.status_code == 200 and b"MINE-1" in csv.content
    assert csv["Content-Disposition"].startswith("attachment;")

    assert client.get(f"/billing/customers/{theirs.pk}/statement/").status_code == 404
    assert client.get(f"/billing/customers/{theirs.pk}/statement.csv").status_code == 404
    assert client.get(f"/billing/customers/{mine.pk}/statement/?month=garbage").status_code == 404
    month = timezone.localdate().strftime("%Y-%m")
    assert client.get(f"/billing/customers/{mine.pk}/statement/?month={month}").status_code == 200

    client.force_login(staff)
    assert b"THEIRS-1" in client.get(f"/billing/customers/{theirs.pk}/statement/").content
    client.logout()
    assert client.get(f"/billing/customers/{mine.pk}/statement/").status_code == 302  # to sign in


def test_a_user_of_no_customer_gets_404(client):
    from tests.factories import UserFactory

    customer = CustomerFactory()
    client.force_login(UserFactory())
    assert client.get(f"/billing/customers/{customer.pk}/statement/").status_code == 404
    assert LedgerEntry.objects.count() == 0


def test_the_statement_page_costs_the_same_queries_for_many_entries(client, plan):
    customer, staff = CustomerFactory(), StaffFactory()
    client.force_login(customer_user(customer))
    url = f"/billing/customers/{customer.pk}/statement/"
    services.credit_load(customer=customer, amount="5", by=staff, idempotency_key="l0", reference="=cmd")
    client.get(url)  # warm up the session and caches
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for i in range(5):
        services.credit_load(customer=customer, amount="5", by=staff, idempotency_key=f"l{i + 1}")
        services.call_records_rate([make_record(customer, f"+2711555010{i}", duration=60).pk])
        services.ledger_adjust(customer=customer, amount="1", by=staff, idempotency_key=f"a{i}", note="x")
    with CaptureQueriesContext(connection) as many:
        assert client.get(url).status_code == 200
    assert len(many) == len(few)
    assert "'=cmd" in client.get(f"/billing/customers/{customer.pk}/statement.csv").content.decode()

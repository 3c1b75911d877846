"""The customer's money pages: call history (filters, pagination, streamed CSV), balance and
ledger with the spend chart, the list of statements. Scoped to the tenant, constant queries."""

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import selectors, services
from billing.choices import CallDisposition
from billing.rating import rate_record
from tests.billing.conftest import make_record
from tests.factories import CustomerFactory, StaffFactory, customer_user, sip_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(plan):
    return CustomerFactory(name="Money Ltd", rate_plan=plan)


@pytest.fixture
def member(client, customer):
    user = customer_user(customer)
    client.force_login(user)
    return user


@pytest.fixture
def staff():
    return StaffFactory()


def _load(customer, staff, amount, key):
    return services.credit_load(customer=customer, amount=amount, by=staff, idempotency_key=key)


def _call(customer, account=None, *, number="+27115550100", at, answered=True, disposition=None, **kw):
    record = make_record(customer, number, at=at, answered=answered, disposition=disposition, **kw)
    if account is not None:
        record.sip_account = account
        record.save(update_fields=["sip_account"])
    return record


def _local(year, month, day, hour=12):
    return timezone.make_aware(datetime(year, month, day, hour), timezone.get_current_timezone())


def _csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


# --- call history ----------------------------------------------------------------------------


def test_call_history_filters_by_account_dates_outcome_and_number(client, customer, member):
    desk = sip_account(customer, "1001", label="Desk").account
    phone = sip_account(customer, "1002").account
    _call(customer, desk, at=_local(2026, 3, 1), record_id="a-jhb", number="+27115550100")
    _call(customer, desk, at=_local(2026, 3, 5), record_id="a-uk", number="+442071234567")
    _call(customer, phone, at=_local(2026, 3, 5), record_id="b-busy", answered=False)
    _call(
        customer, phone, at=_local(2026, 3, 9), record_id="b-refused", answered=False,
        disposition=CallDisposition.REJECTED,
    )  # fmt: skip
    url = reverse("billing:calls")

    def shown(**params):
        page = client.get(url, params).content.decode()
        return {
            rid for rid in ("a-jhb", "a-uk", "b-busy", "b-refused") if f'data-testid="call-{rid}"' in page
        }

    assert shown() == {"a-jhb", "a-uk", "b-busy", "b-refused"}
    assert shown(account=desk.pk) == {"a-jhb", "a-uk"}
    assert shown(since="2026-03-05", until="2026-03-05") == {"a-uk", "b-busy"}
    assert shown(outcome="answered") == {"a-jhb", "a-uk"}
    assert shown(outcome="not_answered") == {"b-busy", "b-refused"}
    assert shown(outcome="rejected") == {"b-refused"}
    assert shown(number="2071") == {"a-uk"}
    assert shown(number="+4420") == {"a-uk"}
    assert shown(account=phone.pk, since="2026-03-06") == {"b-refused"}


def test_call_history_shows_cost_destination_and_plain_words(client, customer, member):
    account = sip_account(customer, "1001").account
    answered = _call(customer, account, at=_local(2026, 3, 1), record_id="paid", duration=61)
    rate_record(answered.pk)
    _call(customer, account, at=_local(2026, 3, 2), record_id="busy", answered=False)
    page = client.get(reverse("billing:calls")).content.decode()
    answered.refresh_from_db()
    assert "Johannesburg" in page and f"{answered.cost:.4f}" in page and "61 s" in page
    assert "486</span> Busy" in page


def test_call_history_bad_filters_are_reported_and_kept(client, customer, member):
    response = client.get(
        reverse("billing:calls"), {"since": "2026-03-09", "until": "2026-03-01", "number": "55"}
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert "The end date is before the start date." in content
    assert 'value="2026-03-09"' in content and 'value="55"' in content
    assert client.get(reverse("billing:calls"), {"since": "yesterday"}).status_code == 200
    csv_response = client.get(reverse("billing:calls-csv"), {"since": "yesterday"})
    assert csv_response.status_code == 400 and b"Enter a valid date" in csv_response.content


def test_call_history_paginates_and_keeps_the_filters(client, customer, member):
    account = sip_account(customer, "1001").account
    for n in range(30):
        _call(customer, account, at=_local(2026, 3, 1) + timedelta(minutes=n), record_id=f"r{n:02d}")
    page1 = client.get(reverse("billing:calls"), {"outcome": "answered"}).content.decode()
    assert "Page 1 of 2" in page1 and "30 calls" in page1
    assert "outcome=answered&amp;page=2" in page1
    page2 = client.get(reverse("billing:calls"), {"outcome": "answered", "page": 2}).content.decode()
    assert 'data-testid="call-r00"' in page2 and 'data-testid="call-r29"' not in page2


def test_call_history_csv_is_the_whole_filtered_set_streamed(client, customer, member):
    account = sip_account(customer, "1001").account
    for n in range(40):
        _call(customer, account, at=_local(2026, 3, 1) + timedelta(minutes=n), record_id=f"r{n:02d}")
    rated = _call(customer, account, at=_local(2026, 3, 2), record_id="rated", number="+447700900123")
    rate_record(rated.pk)
    _call(customer, account, at=_local(2026, 3, 3), record_id="busy", answered=False)
    _call(customer, account, at=_local(2026, 3, 3), record_id="evil", number="=cmd|' /C calc'!A0")
    response = client.get(reverse("billing:calls-csv"), {"outcome": "answered"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = _csv(response)
    assert len(rows) == 42 and "busy" not in {r["record_id"] for r in rows}
    by_id = {r["record_id"]: r for r in rows}
    rated.refresh_from_db()
    assert by_id["rated"]["cost"] == str(rated.cost) and by_id["rated"]["destination"] == "United Kingdom"
    assert by_id["rated"]["extension"] == "1001" and by_id["rated"]["currency"] == "ZAR"
    assert by_id["evil"]["dialled_number"].startswith("'=")


def test_call_history_never_shows_another_customers_calls(client, customer, member):
    other = CustomerFactory()
    theirs = sip_account(other, "1001").account
    _call(other, theirs, at=_local(2026, 3, 1), record_id="theirs")
    assert b"call-theirs" not in client.get(reverse("billing:calls")).content
    # Their account id as a filter is not a choice here: refused, nothing shown.
    response = client.get(reverse("billing:calls"), {"account": theirs.pk})
    assert b"call-theirs" not in response.content and b"Select a valid choice" in response.content
    assert _csv(client.get(reverse("billing:calls-csv"))) == []


# --- balance, ledger, spend, statements ------------------------------------------------------


def test_money_page_balance_ledger_with_running_balance(client, customer, member, staff):
    _load(customer, staff, "100.00", "l1")
    record = _call(customer, at=_local(2026, 3, 1), duration=61)
    rate_record(record.pk)
    _load(customer, staff, "20.00", "l2")
    page = client.get(reverse("billing:money")).content.decode()
    balance = selectors.customer_balance(customer=customer)
    record.refresh_from_db()
    assert f"{balance:.2f} ZAR" in page
    assert "Available credit" in page and "held by calls in progress" in page
    assert "Call to <code>27115550100</code>, 120 s billed" in page
    # Balance after each entry, newest first: 100 + 20 - charge, then 100 - charge, then 100.
    afters = [f"{Decimal(100) - record.cost + 20:.4f}", f"{Decimal(100) - record.cost:.4f}", "100.0000"]
    positions = [page.index(figure) for figure in afters]
    assert positions == sorted(positions)


def test_spend_per_day_groups_charges_by_local_day_net_of_reversals(customer, staff, monkeypatch):
    _load(customer, staff, "100.00", "l1")
    charges = []
    for day, hour in ((3, 9), (3, 23), (5, 10)):
        record = _call(customer, at=_local(2026, 3, day, hour), duration=61)
        monkeypatch.setattr(timezone, "now", lambda d=day, h=hour: _local(2026, 3, d, h))
        rate_record(record.pk)
        charges.append(record.charge)
    monkeypatch.setattr(timezone, "now", lambda: _local(2026, 3, 5, 11))
    services.ledger_reverse(entry=charges[2], by=staff)
    monkeypatch.undo()
    spend = selectors.spend_per_day(
        customer=customer, first=_local(2026, 3, 2).date(), last=_local(2026, 3, 5).date()
    )
    assert [d.day.day for d in spend] == [2, 3, 4, 5]
    assert spend[0].amount == spend[2].amount == spend[3].amount == Decimal("0.0000")
    assert spend[1].amount == -(charges[0].amount + charges[1].amount)
    assert str(spend[3].amount) == "0.0000"


def test_money_page_draws_the_chart_with_a_table_fallback(client, customer, member, staff):
    _load(customer, staff, "100.00", "l1")
    record = _call(customer, at=timezone.now() - timedelta(minutes=5), duration=61)
    rate_record(record.pk)
    record.refresh_from_db()
    page = client.get(reverse("billing:money"), {"days": "7"}).content.decode()
    assert 'role="img"' in page and '<title id="chart-title">Spend per day, last 7 days' in page
    assert page.count('<rect class="bar"') == 7
    assert f"{record.cost:.4f}" in page.split('data-testid="spend-table"')[1]
    assert client.get(reverse("billing:money"), {"days": "1000"}).status_code == 200  # falls back to 30


def test_money_page_lists_statements_since_the_first_entry(client, customer, member, staff, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: _local(2026, 1, 15))
    _load(customer, staff, "50.00", "l1")
    monkeypatch.setattr(timezone, "now", lambda: _local(2026, 3, 10))
    page = client.get(reverse("billing:money")).content.decode()
    for month in ("2026-01", "2026-02", "2026-03"):
        assert f'data-testid="statement-{month}"' in page
        assert f"/billing/customers/{customer.pk}/statement.csv?month={month}" in page
    assert 'data-testid="statement-2025-12"' not in page


def test_money_pages_show_only_the_customers_own_entries(client, customer, member, staff):
    other = CustomerFactory()
    _load(other, staff, "999.00", "theirs")
    _load(customer, staff, "10.00", "mine")
    page = client.get(reverse("billing:money")).content.decode()
    assert "999.0000" not in page and "10.00 ZAR" in page


def test_navigation_links_the_money_pages(client, customer, member):
    page = client.get(reverse("dashboard")).content.decode()
    assert reverse("billing:calls") in page and reverse("billing:money") in page
    money = client.get(reverse("billing:money")).content.decode()
    assert f'href="{reverse("billing:money")}" aria-current="page"' in money


def test_staff_go_to_the_console(client, staff):
    client.force_login(staff)
    for name in ("billing:calls", "billing:calls-csv", "billing:money"):
        assert client.get(reverse(name))["Location"] == reverse("admin:index")


# --- constant queries ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["billing:calls", "billing:money"])
def test_money_pages_keep_a_constant_number_of_queries(
    client, customer, member, staff, name, django_assert_max_num_queries
):
    counter = iter(range(10_000))

    def grow():
        account = sip_account(customer, str(2000 + next(counter))).account
        _load(customer, staff, "10.00", f"grow-{next(counter)}")
        for n in range(8):
            record = _call(customer, account, at=timezone.now() - timedelta(hours=n), duration=30 + n)
            rate_record(record.pk)
        _call(customer, account, at=timezone.now(), answered=False)

    grow()
    with django_assert_max_num_queries(14) as baseline:
        assert client.get(reverse(name)).status_code == 200
    for _ in range(4):
        grow()
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        assert client.get(reverse(name)).status_code == 200


def test_call_csv_queries_do_not_grow_with_rows(client, customer, member, django_assert_max_num_queries):
    account = sip_account(customer, "1001").account
    for n in range(30):
        _call(customer, account, at=_local(2026, 3, 1) + timedelta(minutes=n))
    with django_assert_max_num_queries(8):
        assert len(_csv(client.get(reverse("billing:calls-csv")))) == 30

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from billing import rating, services
from billing.models import Rate, RatePlan
from billing.rates_csv import RatesImportError
from portal.errors import ApplicationError, PermissionDenied
from sipsync.models import DocumentKind, OutboxEntry
from tests.billing.conftest import make_rate
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

GOOD = (
    "prefix,description,price_per_minute,connect_fee,first_increment,next_increment\n"
    "27,South Africa,0.60,0,60,60\n"
    "2782,Vodacom,1.20,0.05,30,6\n"
    "44,United Kingdom,0.9,,1,1\n"
)


@pytest.fixture
def empty_plan():
    return RatePlan.objects.create(name="Import", currency="ZAR")


def test_import_creates_the_table_and_enqueues_the_plan(empty_plan):
    result = services.rates_import(plan=empty_plan, file=GOOD.encode(), by=StaffFactory())
    assert (result.created, result.closed, result.superseded) == (3, 0, 0)
    rates = {r.prefix: r for r in empty_plan.rates.all()}
    assert rates["2782"].connect_fee == Decimal("0.05") and rates["2782"].first_increment == 30
    assert rates["44"].connect_fee == 0 and rates["44"].next_increment == 1
    assert all(r.effective_from == result.effective_from and r.effective_to is None for r in rates.values())
    assert OutboxEntry.objects.filter(kind=DocumentKind.RATE_PLAN, object_id=empty_plan.pk).exists()


def test_a_file_with_bad_rows_is_refused_with_every_row_and_reason(empty_plan):
    make_rate(empty_plan, "27", "0.50")
    bad = (
        "prefix,description,price_per_minute,connect_fee,first_increment,next_increment\n"
        "27,South Africa,0.60,0,60,60\n"  # row 2: fine
        "27x,Bad prefix,0.60,0,60,60\n"  # row 3
        "28,,abc,-1,0,60\n"  # row 4: three problems
        "27,Again,0.5,0,60,60\n"  # row 5: repeats row 2
        "29,Short row\n"  # row 6
        "\n"  # blank: skipped
        "30,Too precise,0.123456,0,60,60\n"  # row 8
    )
    with pytest.raises(RatesImportError) as caught:
        services.rates_import(plan=empty_plan, file=bad, by=StaffFactory())
    rows = [row for row, _ in caught.value.errors]
    assert rows == [3, 4, 5, 6, 8]
    reasons = dict(caught.value.errors)
    assert "prefix" in reasons[3]
    assert "description is required" in reasons[4] and "not a number" in reasons[4]
    assert "must not be negative" in reasons[4] and "first_increment" in reasons[4]
    assert "repeats row 2" in reasons[5]
    assert "expected 6 cells" in reasons[6]
    assert "5 decimal places" in reasons[8]
    assert "row 3:" in caught.value.message and caught.value.field_errors["file"][0].startswith("row 3:")
    # nothing imported, nothing closed
    assert list(empty_plan.rates.values_list("prefix", "effective_to")) == [("27", None)]
    assert not OutboxEntry.objects.filter(kind=DocumentKind.RATE_PLAN).exists()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("prefix,description\n27,SA\n", "missing column(s): price_per_minute"),
        ("prefix,description,price_per_minute,cost\n27,SA,1,2\n", "unknown column(s): cost"),
        ("prefix,description,price_per_minute\n", "no rates"),
    ],
)
def test_bad_headers_and_empty_files_are_refused(empty_plan, text, reason):
    with pytest.raises(RatesImportError, match=r"row \d") as caught:
        services.rates_import(plan=empty_plan, file=text, by=StaffFactory())
    assert reason in caught.value.message
    assert not Rate.objects.exists()


def test_only_staff_import_and_not_into_the_past(empty_plan):
    with pytest.raises(PermissionDenied):
        services.rates_import(plan=empty_plan, file=GOOD, by=UserFactory())
    with pytest.raises(ApplicationError, match="past"):
        services.rates_import(
            plan=empty_plan, file=GOOD, by=StaffFactory(), effective_from=timezone.now() - timedelta(hours=1)
        )


def test_a_new_table_closes_the_current_rows_and_replaces_scheduled_ones(empty_plan):
    staff, now = StaffFactory(), timezone.now()
    old = make_rate(empty_plan, "27", "0.50", start=now - timedelta(days=30))
    ended = make_rate(empty_plan, "26", "0.70", start=now - timedelta(days=30), end=now - timedelta(days=1))
    scheduled = make_rate(empty_plan, "28", "0.70", start=now + timedelta(days=5))
    start = now + timedelta(days=2)
    result = services.rates_import(plan=empty_plan, file=GOOD, by=staff, effective_from=start)
    assert (result.created, result.closed, result.superseded) == (3, 1, 1)
    old.refresh_from_db()
    ended.refresh_from_db()
    assert old.effective_to == start  # history kept: calls before `start` still find it
    assert ended.effective_to == now - timedelta(days=1)  # untouched
    assert not Rate.objects.filter(pk=scheduled.pk).exists()  # never took effect
    number = "+27115550100"
    assert rating.find_rate(plan=empty_plan, number=number, at=start - timedelta(seconds=1)) == old
    assert rating.find_rate(plan=empty_plan, number=number, at=start).price_per_minute == Decimal("0.60")


def test_export_writes_what_import_reads(empty_plan):
    staff = StaffFactory()
    services.rates_import(plan=empty_plan, file=SimpleUploadedFile("r.csv", GOOD.encode()), by=staff)
    exported = services.rates_export(plan=empty_plan, at=timezone.now() + timedelta(seconds=1))
    assert exported.splitlines() == [
        "prefix,description,price_per_minute,connect_fee,first_increment,next_increment",
        "27,South Africa,0.60,0.00,60,60",
        "2782,Vodacom,1.20,0.05,30,6",
        "44,United Kingdom,0.90,0.00,1,1",
    ]
    other = RatePlan.objects.create(name="Copy", currency="ZAR")
    assert services.rates_import(plan=other, file=exported, by=staff).created == 3
    assert services.rates_export(plan=other, at=timezone.now() + timedelta(seconds=1)) == exported


def test_admin_import_reports_bad_rows_and_exports(client):
    staff = StaffFactory(is_superuser=True)
    client.force_login(staff)
    plan = RatePlan.objects.create(name="Admin", currency="ZAR")
    url = f"/admin/billing/rateplan/{plan.pk}/import/"
    bad = SimpleUploadedFile("r.csv", b"prefix,description,price_per_minute\n27,SA,x\n")
    response = client.post(url, {"file": bad})
    assert response.status_code == 200 and b"row 2: price_per_minute" in response.content
    assert not Rate.objects.exists()
    response = client.post(url, {"file": SimpleUploadedFile("r.csv", GOOD.encode())})
    assert response.status_code == 302 and plan.rates.count() == 3
    export = client.get(f"/admin/billing/rateplan/{plan.pk}/export/")
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    assert client.get(f"/admin/billing/rateplan/{plan.pk}/change/").status_code == 200

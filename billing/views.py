"""Pages for money.

The customer's own pages (call history with its CSV export, balance and ledger with the spend
chart, the list of statements) go through `portal.views.customer_page`: the tenant is the signed-in
user's customer, every read goes through the tenant-scoped selectors. The statement pages
(printable HTML and CSV) serve customers and staff alike: a customer's user sees only their own
customer (another id is 404), staff see every customer.
"""

import csv
import re
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts import selectors as account_selectors
from billing import selectors, statements
from portal.charts import bar_chart
from portal.errors import NotFound, PermissionDenied
from portal.explanations import call_outcome
from portal.forms import CallFilterForm
from portal.tenancy import tenant_of
from portal.views import PAGE_SIZE, customer_page
from sipsync import selectors as sync_selectors

CHART_PERIODS = (7, 30, 90)
PHONE_CHARS = re.compile(r"[+0-9*#]*")
CSV_CHUNK = 500


# --- call history ----------------------------------------------------------------------------


def _call_filter(request: HttpRequest) -> CallFilterForm:
    accounts = account_selectors.sip_account_list(tenant=request.tenant).values_list(
        "pk", "extension", "label"
    )
    return CallFilterForm(request.GET or None, accounts=list(accounts))


def _filtered_calls(request: HttpRequest, form: CallFilterForm):
    filters = form.filters() if form.is_bound and form.is_valid() else {}
    return selectors.call_record_list(tenant=request.tenant, **filters)


@customer_page
def call_history(request: HttpRequest) -> HttpResponse:
    form = _call_filter(request)
    invalid = form.is_bound and not form.is_valid()
    calls = (
        selectors.call_record_list(tenant=request.tenant).none()
        if invalid
        else _filtered_calls(request, form)
    )
    page = Paginator(calls, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "invalid": invalid,
        "page": page,
        "rows": [(call, call_outcome(call)) for call in page.object_list],
        "query": query.urlencode(),
        "currency": request.customer.currency,
    }
    return render(request, "billing/calls.html", context)


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


CALL_CSV_COLUMNS = [
    "record_id",
    "invited_at",
    "answered_at",
    "ended_at",
    "extension",
    "caller",
    "dialled_number",
    "e164",
    "disposition",
    "final_code",
    "cause",
    "duration_seconds",
    "billed_seconds",
    "destination",
    "prefix",
    "cost",
    "currency",
]


@customer_page
def call_history_csv(request: HttpRequest) -> HttpResponse:
    """The filtered call history as CSV, streamed row by row (no size limit, constant memory)."""
    form = _call_filter(request)
    if form.is_bound and not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(problems)}" for field, problems in form.errors.items())
        return HttpResponse(
            f"Fix the filters: {errors}\n", status=400, content_type="text/plain; charset=utf-8"
        )
    calls = _filtered_calls(request, form)
    currency = request.customer.currency
    writer = csv.writer(_Echo(), lineterminator="\r\n")

    def lines():
        yield writer.writerow(CALL_CSV_COLUMNS)
        for call in calls.iterator(chunk_size=CSV_CHUNK):
            yield writer.writerow(_call_csv_row(call, currency))

    name = f"calls-{request.customer.account_number}-{timezone.localdate():%Y-%m-%d}.csv"
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _call_csv_row(call, currency: str) -> list:
    text = statements.csv_text
    return [
        call.record_id,
        call.invited_at.isoformat(),
        call.answered_at.isoformat() if call.answered_at else "",
        call.ended_at.isoformat(),
        call.sip_account.extension if call.sip_account else "",
        text(call.caller),
        _dialled(call.dialled_number),
        _dialled(call.normalised_number),
        call.disposition,
        call.final_code,
        call.cause,
        call.duration_seconds,
        "" if call.billed_seconds is None else call.billed_seconds,
        text(call.rate.description) if call.rate else "",
        call.rate.prefix if call.rate else "",
        "" if call.cost is None else call.cost,
        currency,
    ]


def _dialled(number: str) -> str:
    """A dialled number as typed; anything that is not plainly a number is made formula-safe."""
    return number if PHONE_CHARS.fullmatch(number) else statements.csv_text(number)


# --- balance, ledger and spend ---------------------------------------------------------------


@customer_page
def money(request: HttpRequest) -> HttpResponse:
    customer = request.customer
    balance = selectors.customer_balance(customer=customer)
    in_use = sync_selectors.credit_in_use(customer=customer)
    available = selectors.available_credit(customer=customer, reserved=in_use.reserved, balance=balance)
    entries = selectors.ledger_list(tenant=request.tenant).select_related("call_record", "reverses")
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    days = _chart_days(request.GET.get("days"))
    last = timezone.localdate()
    spend = selectors.spend_per_day(customer=customer, first=last - timedelta(days=days - 1), last=last)
    profile = selectors.billing_profile(customer=customer)
    context = {
        "customer": customer,
        "balance": balance,
        "available": available,
        "reserved": in_use.reserved,
        "profile": profile,
        "low_balance": bool(profile and profile.low_balance_notified),
        "page": page,
        "rows": selectors.ledger_page_balances(customer=customer, entries=list(page.object_list)),
        "days": days,
        "periods": CHART_PERIODS,
        "spend": spend,
        "spend_total": sum((d.amount for d in spend), Decimal("0.0000")),
        "chart": bar_chart([(f"{d.day:%d %b}", d.amount) for d in spend]),
        "months": selectors.ledger_months(customer=customer),
    }
    return render(request, "billing/money.html", context)


def _chart_days(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and int(raw) in CHART_PERIODS else 30


# --- statements ------------------------------------------------------------------------------


def _statement(request: HttpRequest, customer_id: int) -> statements.Statement:
    try:
        tenant = tenant_of(request.user)
        customer = account_selectors.customer_get(tenant=tenant, customer_id=customer_id)
    except (NotFound, PermissionDenied):
        raise Http404("No such customer.") from None
    month = _month(request.GET.get("month", ""))
    start, end = statements.month_period(month)
    return statements.statement_build(customer=customer, start=start, end=end)


def _month(raw: str) -> date:
    """`?month=YYYY-MM`; the current month when absent; 404 when malformed."""
    if not raw:
        return timezone.localdate().replace(day=1)
    try:
        year, month = (int(part) for part in raw.split("-"))
        return date(year, month, 1)
    except ValueError:
        raise Http404("Use ?month=YYYY-MM.") from None


@login_required
def statement_page(request: HttpRequest, customer_id: int) -> HttpResponse:
    statement = _statement(request, customer_id)
    month = statement.start.date()
    context = {
        "statement": statement,
        "month": month.strftime("%Y-%m"),
        "previous_month": (month.replace(day=1) - timedelta(days=1)).strftime("%Y-%m"),
        "next_month": statement.end.strftime("%Y-%m"),
    }
    return render(request, "billing/statement.html", context)


@login_required
def statement_csv(request: HttpRequest, customer_id: int) -> HttpResponse:
    statement = _statement(request, customer_id)
    name = f"statement-{statement.customer.account_number}-{statement.start:%Y-%m}.csv"
    response = HttpResponse(statements.statement_csv(statement), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response

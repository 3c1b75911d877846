"""Pages for money: a customer's statement (printable HTML and CSV).

Views only validate and call selectors/statements; tenancy comes from `portal.tenancy`: a
customer's user sees only their own customer (another id is 404), staff see every customer.
"""

from datetime import date, timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts import selectors as account_selectors
from billing import statements
from portal.errors import NotFound, PermissionDenied
from portal.tenancy import tenant_of


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

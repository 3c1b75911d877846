from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from accounts import selectors as account_selectors
from billing import selectors as billing_selectors
from portal.tenancy import tenant_of


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    if request.user.is_staff:
        return redirect("admin:index")
    tenant = tenant_of(request.user)
    customer = account_selectors.customer_get(tenant=tenant, customer_id=tenant.customer_id)
    context = {
        "customer": customer,
        "balance": billing_selectors.customer_balance(customer=customer),
        "sip_accounts": account_selectors.sip_account_list(tenant=tenant)[:50],
    }
    return render(request, "portal/dashboard.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})

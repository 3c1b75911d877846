from django.urls import path

from billing import apis

urlpatterns = [
    path("customers/<id:customer_id>/balance/", apis.CustomerBalanceApi.as_view(), name="customer-balance"),
    path("customers/<id:customer_id>/ledger/", apis.CustomerLedgerApi.as_view(), name="customer-ledger"),
    path(
        "customers/<id:customer_id>/credit-loads/",
        apis.CreditLoadApi.as_view(),
        name="customer-credit-loads",
    ),
    path("rates/", apis.RateListApi.as_view(), name="rates"),
    path("rate-plans/<id:plan_id>/import/", apis.RatesImportApi.as_view(), name="rate-plan-import"),
    path("call-records/", apis.CallRecordListApi.as_view(), name="call-records"),
]

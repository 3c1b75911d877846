from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("calls/", views.call_history, name="calls"),
    path("calls.csv", views.call_history_csv, name="calls-csv"),
    path("money/", views.money, name="money"),
    path("customers/<int:customer_id>/statement/", views.statement_page, name="statement"),
    path("customers/<int:customer_id>/statement.csv", views.statement_csv, name="statement-csv"),
]

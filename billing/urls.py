from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("customers/<int:customer_id>/statement/", views.statement_page, name="statement"),
    path("customers/<int:customer_id>/statement.csv", views.statement_csv, name="statement-csv"),
]

"""Staff screens for money: the ledger is read-only; credit is loaded through `credit_load()`;
rate tables change only by CSV import (`rates_import`), are exported as CSV; call records that
could not be rated are listed (filter "Rating") and can be retried after fixing the rates."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing import services
from billing.models import BillingProfile, CallRecord, CreditLoad, LedgerEntry, Rate, RatePlan
from billing.rates_csv import COLUMNS
from portal import audit
from portal.admin import ReadOnlyAdmin
from portal.errors import ApplicationError
from portal.models import AuditAction


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "customer", "kind", "amount", "currency", "reference", "created_by")
    list_filter = ("kind", "currency")
    search_fields = ("customer__name", "customer__account_number", "reference", "idempotency_key")
    list_select_related = ("customer", "created_by")


class CreditLoadForm(forms.ModelForm):
    # Named unlike the model's idempotency_key so the ModelForm skips its unique check: a
    # resubmitted form must reach the service, which answers with the first entry.
    submission_key = forms.CharField(widget=forms.HiddenInput, max_length=100)

    class Meta:
        model = CreditLoad
        fields = ("customer", "amount", "reference", "note")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One key per rendered form: submitting the same form twice loads once.
        self.fields["submission_key"].initial = f"admin-load:{uuid.uuid4()}"

    def clean_amount(self):
        try:
            amount = services.parse_amount(self.cleaned_data["amount"])
        except ApplicationError as error:
            raise forms.ValidationError(error.message) from None
        if amount <= 0:
            raise forms.ValidationError("A credit load must be a positive amount.")
        return amount


@admin.register(CreditLoad)
class CreditLoadAdmin(admin.ModelAdmin):
    form = CreditLoadForm
    list_display = ("created_at", "customer", "amount", "currency", "reference", "created_by")
    search_fields = ("customer__name", "customer__account_number", "reference")
    autocomplete_fields = ("customer",)
    list_select_related = ("customer", "created_by")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(kind="credit_load")

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        key = data["submission_key"]
        try:
            with transaction.atomic():
                replayed = LedgerEntry.objects.filter(idempotency_key=key).exists()
                entry = services.credit_load(
                    customer=data["customer"],
                    amount=data["amount"],
                    by=request.user,
                    idempotency_key=key,
                    reference=data.get("reference", ""),
                    note=data.get("note", ""),
                )
                if not replayed:
                    audit.record(
                        actor=request.user,
                        action=AuditAction.CREDIT_LOADED,
                        obj=entry.customer,
                        details={
                            "amount": str(entry.amount),
                            "currency": entry.currency,
                            "reference": entry.reference,
                        },
                    )
        except ApplicationError as error:
            messages.error(request, error.message)
            return
        obj.pk = entry.pk
        obj.currency = entry.currency


class RateInline(admin.TabularInline):
    """The plan's rates, newest first, read-only: import a CSV to change them."""

    model = Rate
    extra = 0
    can_delete = False
    ordering = ("prefix", "-effective_from")
    fields = readonly_fields = (
        "prefix",
        "description",
        "price_per_minute",
        "connect_fee",
        "first_increment",
        "next_increment",
        "effective_from",
        "effective_to",
    )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RatesImportForm(forms.Form):
    file = forms.FileField(help_text=f"CSV with the columns {', '.join(COLUMNS)} (header row required)")
    effective_from = forms.DateTimeField(
        required=False, help_text="when the new table starts (empty: now); must not be in the past"
    )


@admin.register(RatePlan)
class RatePlanAdmin(admin.ModelAdmin):
    list_display = ("name", "currency", "is_default", "rate_table")
    readonly_fields = ("rate_table",)
    inlines = [RateInline]
    actions = ["export_rates"]

    def save_model(self, request, obj, form, change):
        services.rate_plan_save(plan=obj)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Rate table")
    def rate_table(self, obj):
        if obj is None or obj.pk is None:
            return "Save the plan first, then import its rates."
        return format_html(
            '<a href="{}">Import CSV</a> · <a href="{}">Export CSV</a>',
            reverse("admin:billing_rateplan_import", args=[obj.pk]),
            reverse("admin:billing_rateplan_export", args=[obj.pk]),
        )

    def get_urls(self):
        own = [
            path(
                "<int:plan_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="billing_rateplan_import",
            ),
            path(
                "<int:plan_id>/export/",
                self.admin_site.admin_view(self.export_view),
                name="billing_rateplan_export",
            ),
        ]
        return own + super().get_urls()

    def import_view(self, request, plan_id: int):
        plan = get_object_or_404(RatePlan, pk=plan_id)
        if not self.has_change_permission(request, plan):
            return HttpResponse(status=403)
        form = RatesImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                result = services.rates_import(
                    plan=plan,
                    file=form.cleaned_data["file"],
                    by=request.user,
                    effective_from=form.cleaned_data.get("effective_from"),
                )
            except ApplicationError as error:
                errors = error.field_errors.get("file") or [error.message]
                messages.error(request, "Nothing was imported: fix the rows below and upload again.")
            else:
                messages.success(
                    request,
                    f"Imported {result.created} rates into {result.plan}, effective from "
                    f"{result.effective_from:%Y-%m-%d %H:%M:%S %Z}; {result.closed} earlier rates end then, "
                    f"{result.superseded} scheduled rates were replaced.",
                )
                return redirect("admin:billing_rateplan_change", plan.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": plan,
            "title": f"Import rates into {plan.name}",
            "form": form,
            "row_errors": errors,
        }
        return TemplateResponse(request, "billing/admin_rates_import.html", context)

    def export_view(self, request, plan_id: int):
        plan = get_object_or_404(RatePlan, pk=plan_id)
        if not self.has_view_permission(request, plan):
            return HttpResponse(status=403)
        return _csv_download(services.rates_export(plan=plan), f"rates-{plan.name}.csv")

    @admin.action(description="Export the current rates as CSV (one plan)")
    def export_rates(self, request, queryset):
        if queryset.count() != 1:
            messages.error(request, "Select exactly one plan to export.")
            return None
        plan = queryset.get()
        return _csv_download(services.rates_export(plan=plan), f"rates-{plan.name}.csv")


def _csv_download(text: str, name: str) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


class RatingFilter(admin.SimpleListFilter):
    title = "rating"
    parameter_name = "rating"

    def lookups(self, request, model_admin):
        return [("error", "Not rateable (rating error)"), ("pending", "Waiting"), ("rated", "Rated")]

    def queryset(self, request, queryset):
        if self.value() == "error":
            return queryset.filter(rated=False).exclude(rating_error="")
        if self.value() == "pending":
            return queryset.filter(rated=False, rating_error="")
        if self.value() == "rated":
            return queryset.filter(rated=True)
        return queryset


@admin.register(CallRecord)
class CallRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "invited_at",
        "customer",
        "caller",
        "dialled_number",
        "final_code",
        "duration_seconds",
        "cost",
        "rated",
        "rating_error",
    )
    list_filter = (RatingFilter, "disposition", "final_code")
    search_fields = ("record_id", "caller", "dialled_number", "customer__account_number")
    list_select_related = ("customer",)
    actions = ["retry_rating"]

    @admin.action(description="Rate again (after fixing the rates)")
    def retry_rating(self, request, queryset):
        ids = list(queryset.filter(rated=False).values_list("pk", flat=True))
        report = services.call_records_rate(ids)
        audit.record(
            actor=request.user,
            action=AuditAction.CALL_RATING_RETRIED,
            details={"records": len(ids), "charged": report.charged, "errors": report.errors},
        )
        messages.info(
            request,
            f"Charged {report.charged}, free {report.free}, still not rateable {report.errors}, "
            f"already rated {report.already}, failed {report.failed}.",
        )

    def has_change_permission(self, request, obj=None):
        # The action needs the change permission; the form itself stays read-only.
        return obj is None and request.user.is_active and request.user.is_staff


class BillingProfileForm(forms.ModelForm):
    class Meta:
        model = BillingProfile
        fields = ("customer", "low_balance_threshold", "daily_spend_cap")


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    form = BillingProfileForm
    list_display = ("customer", "low_balance_threshold", "low_balance_notified", "daily_spend_cap")
    list_filter = ("low_balance_notified",)
    search_fields = ("customer__name", "customer__account_number")
    autocomplete_fields = ("customer",)
    readonly_fields = ("low_balance_notified", "low_balance_notified_at")

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "customer") if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            saved = services.billing_profile_update(
                customer=obj.customer,
                by=request.user,
                low_balance_threshold=data.get("low_balance_threshold"),
                daily_spend_cap=data.get("daily_spend_cap"),
            )
        except ApplicationError as error:
            messages.error(request, error.message)
            return
        obj.pk = saved.pk

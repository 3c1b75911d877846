"""Staff screens for money: the ledger is read-only; credit is loaded through `credit_load()`."""

import uuid

from django import forms
from django.contrib import admin, messages

from billing import services
from billing.models import CallRecord, CreditLoad, LedgerEntry, Rate, RatePlan
from portal.errors import ApplicationError


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


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
        try:
            entry = services.credit_load(
                customer=data["customer"],
                amount=data["amount"],
                by=request.user,
                idempotency_key=data["submission_key"],
                reference=data.get("reference", ""),
                note=data.get("note", ""),
            )
        except ApplicationError as error:
            messages.error(request, error.message)
            return
        obj.pk = entry.pk
        obj.currency = entry.currency


class RateInline(admin.TabularInline):
    model = Rate
    extra = 0


@admin.register(RatePlan)
class RatePlanAdmin(admin.ModelAdmin):
    list_display = ("name", "currency", "is_default")
    inlines = [RateInline]


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
    )
    list_filter = ("rated", "disposition", "final_code")
    search_fields = ("record_id", "caller", "dialled_number", "customer__account_number")
    list_select_related = ("customer",)

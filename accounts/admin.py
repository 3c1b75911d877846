"""The provider's staff console over customers, SIP accounts and caller IDs.

Changes that have rules go through the services (actions below), never through raw model saves:
SIP passwords are reset by a service that shows the new one once, caller IDs are approved by one.
HA1 digests are never displayed.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html

from accounts import api_keys, services
from accounts.choices import CustomerStatus
from accounts.models import ApiKey, CallerId, Customer, Membership, SipAccount, SipAccountCodec
from portal import audit
from portal.errors import ApplicationError
from portal.models import AuditAction


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    """Customers are created, changed and suspended through the services, so that every change
    reaches the SIP service (the outbox) and the audit log."""

    list_display = ("account_number", "name", "status", "country_code", "currency", "created_at")
    list_filter = ("status",)
    search_fields = ("account_number", "name")
    fields = (
        "account_number",
        "name",
        "status",
        "country_code",
        "national_prefix",
        "currency",
        "rate_plan",
        "money",
    )
    readonly_fields = ("account_number", "money")
    actions = ["suspend", "reactivate"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        # Status by the actions (pushed and audited); currency fixed once the ledger exists.
        return (*self.readonly_fields, "status", "currency")

    @admin.display(description="Money")
    def money(self, obj):
        if obj is None or obj.pk is None:
            return "—"
        return format_html(
            '<a href="{}">Statement</a> · <a href="{}?customer__id__exact={}">Ledger</a> · '
            '<a href="{}?customer={}">Load credit</a> · <a href="{}?customer__id__exact={}">Calls</a>',
            reverse("billing:statement", args=[obj.pk]),
            reverse("admin:billing_ledgerentry_changelist"),
            obj.pk,
            reverse("admin:billing_creditload_add"),
            obj.pk,
            reverse("admin:billing_callrecord_changelist"),
            obj.pk,
        )

    def save_model(self, request, obj, form, change):
        if change:
            changed = {field: form.cleaned_data[field] for field in form.changed_data}
            with transaction.atomic():
                services.customer_update(customer=obj, data=changed)
                if changed:
                    audit.record(
                        actor=request.user,
                        action=AuditAction.CUSTOMER_CHANGED,
                        obj=obj,
                        details={"changed": changed},
                    )
            return
        with transaction.atomic():
            created = services.customer_create(
                name=obj.name,
                country_code=obj.country_code,
                national_prefix=obj.national_prefix,
                currency=obj.currency,
            )
            if obj.rate_plan is not None:
                services.customer_update(customer=created, data={"rate_plan": obj.rate_plan})
            if obj.status != created.status:
                services.customer_set_status(customer=created, status=obj.status)
            audit.record(actor=request.user, action=AuditAction.CUSTOMER_CREATED, obj=created)
        obj.pk, obj.account_number = created.pk, created.account_number

    def has_delete_permission(self, request, obj=None):
        return False

    def _set_status(self, request, queryset, status: str) -> None:
        changed = 0
        for customer in queryset:
            if customer.status == status:
                continue
            previous = customer.status
            with transaction.atomic():
                services.customer_set_status(customer=customer, status=status)
                audit.record(
                    actor=request.user,
                    action=AuditAction.CUSTOMER_STATUS_CHANGED,
                    obj=customer,
                    details={"from": previous, "to": status},
                )
            changed += 1
        self.message_user(request, f"{changed} customer(s) now {CustomerStatus(status).label.lower()}.")

    @admin.action(description="Suspend (their phones are refused with 403 until reactivated)")
    def suspend(self, request, queryset):
        self._set_status(request, queryset, CustomerStatus.SUSPENDED)

    @admin.action(description="Reactivate")
    def reactivate(self, request, queryset):
        self._set_status(request, queryset, CustomerStatus.ACTIVE)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "customer", "role", "created_at")
    search_fields = ("user__username", "customer__name", "customer__account_number")
    autocomplete_fields = ("customer",)


class CodecInline(admin.TabularInline):
    model = SipAccountCodec
    extra = 0
    can_delete = False
    readonly_fields = ("codec", "position")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SipAccount)
class SipAccountAdmin(admin.ModelAdmin):
    list_display = ("extension", "username", "customer", "enabled", "password_change_required", "updated_at")
    list_filter = ("enabled", "password_change_required", "do_not_disturb")
    search_fields = ("username", "extension", "label", "customer__name", "customer__account_number")
    list_select_related = ("customer",)
    exclude = ("ha1_md5", "ha1_sha256")
    readonly_fields = (
        "customer",
        "extension",
        "label",
        "username",
        "realm",
        "password_changed_at",
        "enabled",
        "password_change_required",
        "max_concurrent_calls",
        "max_contacts",
        "may_call_internal",
        "may_call_national",
        "may_call_mobile",
        "may_call_international",
        "may_call_premium",
        "forward_all_to",
        "do_not_disturb",
        "default_caller_id",
        "created_at",
        "updated_at",
    )
    inlines = [CodecInline]
    actions = ["require_password_change", "reset_password", "disable", "enable"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Require a password change (phones get 403 until it is reset)")
    def require_password_change(self, request, queryset):
        for account in queryset:
            with transaction.atomic():
                services.sip_account_require_password_change(account=account)
                audit.record(actor=request.user, action=AuditAction.PASSWORD_CHANGE_REQUIRED, obj=account)
        self.message_user(request, f"{queryset.count()} account(s) must now change their password.")

    @admin.action(description="Reset the password (the new one is shown once)")
    def reset_password(self, request, queryset):
        for account in queryset:
            with transaction.atomic():
                issued = services.sip_account_set_password(account=account)
                audit.record(actor=request.user, action=AuditAction.PASSWORD_RESET, obj=account)
            self.message_user(
                request,
                f"New password for {account.username}: {issued.password} (shown once; it is not stored).",
                messages.WARNING,
            )

    @admin.action(description="Disable (phones get 403)")
    def disable(self, request, queryset):
        for account in queryset:
            with transaction.atomic():
                services.sip_account_update(account=account, data={"enabled": False})
                audit.record(actor=request.user, action=AuditAction.ACCOUNT_DISABLED, obj=account)

    @admin.action(description="Enable")
    def enable(self, request, queryset):
        for account in queryset:
            with transaction.atomic():
                services.sip_account_update(account=account, data={"enabled": True})
                audit.record(actor=request.user, action=AuditAction.ACCOUNT_ENABLED, obj=account)


@admin.register(CallerId)
class CallerIdAdmin(admin.ModelAdmin):
    list_display = ("number", "customer", "status", "requested_at", "decided_by", "decided_at")
    list_filter = ("status",)
    search_fields = ("number", "customer__name", "customer__account_number")
    list_select_related = ("customer", "decided_by")
    readonly_fields = (
        "customer",
        "number",
        "status",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
    )
    actions = ["approve", "reject"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Approve the selected caller IDs")
    def approve(self, request, queryset):
        for caller_id in queryset:
            with transaction.atomic():
                services.caller_id_approve(caller_id=caller_id, by=request.user)
                audit.record(
                    actor=request.user,
                    action=AuditAction.CALLER_ID_APPROVED,
                    obj=caller_id,
                    details={"number": caller_id.number},
                )
        self.message_user(request, f"Approved {queryset.count()} caller ID(s).")

    @admin.action(description="Reject the selected caller IDs")
    def reject(self, request, queryset):
        for caller_id in queryset:
            try:
                with transaction.atomic():
                    services.caller_id_reject(caller_id=caller_id, by=request.user)
                    audit.record(
                        actor=request.user,
                        action=AuditAction.CALLER_ID_REJECTED,
                        obj=caller_id,
                        details={"number": caller_id.number},
                    )
            except ApplicationError as error:
                self.message_user(request, error.message, messages.ERROR)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("name", "customer")

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("name", "").strip():
            raise forms.ValidationError("Give the key a name, e.g. the integration that will use it.")
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made through `api_key_create`: the plaintext is shown once, only its hash is kept.
    Without a customer the key acts as the staff member who creates it."""

    form = ApiKeyForm
    list_display = ("name", "prefix", "customer", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "customer__name", "customer__account_number")
    list_select_related = ("customer", "user")
    autocomplete_fields = ("customer",)
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("name", "customer", "user", "prefix", "created_at", "last_used_at", "revoked_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "customer")
        return self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        customer = form.cleaned_data.get("customer")
        with transaction.atomic():
            issued = api_keys.api_key_create(
                name=form.cleaned_data["name"], customer=customer, user=None if customer else request.user
            )
            audit.record(
                actor=request.user,
                action=AuditAction.API_KEY_CREATED,
                obj=issued.key,
                details={"name": issued.key.name, "prefix": issued.key.prefix},
            )
        obj.pk = issued.key.pk
        self.message_user(
            request,
            f"API key {issued.key.name}: {issued.plaintext} (shown once; only its hash is stored).",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            with transaction.atomic():
                if key.revoked_at is None:
                    audit.record(
                        actor=request.user,
                        action=AuditAction.API_KEY_REVOKED,
                        obj=key,
                        details={"name": key.name, "prefix": key.prefix},
                    )
                api_keys.api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")

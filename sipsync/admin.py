from django.contrib import admin

from sipsync.models import DocumentVersion, OutboxEntry, ProvisioningStatus, SipEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Sync state is written by the sync tasks only; the admin shows it."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OutboxEntry)
class OutboxEntryAdmin(ReadOnlyAdmin):
    list_display = ["kind", "object_id", "attempts", "next_attempt_at", "updated_at", "last_error"]
    list_filter = ["kind"]


@admin.register(DocumentVersion)
class DocumentVersionAdmin(ReadOnlyAdmin):
    list_display = ["kind", "object_id", "version", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["object_id"]


@admin.register(ProvisioningStatus)
class ProvisioningStatusAdmin(ReadOnlyAdmin):
    list_display = ["account", "node", "state", "applied_version", "updated_at", "error"]
    list_filter = ["state", "node"]
    list_select_related = ["account"]
    search_fields = ["account__username", "account__extension"]


@admin.register(SipEvent)
class SipEventAdmin(ReadOnlyAdmin):
    list_display = ["time", "node_name", "method", "code", "cause", "aor", "source_ip", "user_agent"]
    list_filter = ["kind", "code", "cause"]
    list_select_related = ["account", "customer"]
    search_fields = ["aor", "source_ip", "call_id"]
    raw_id_fields = ["account", "customer"]

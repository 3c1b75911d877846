"""Sync state in the staff console, read-only: the sync tasks write it, and deleting an outbox
row would drop a push the nodes still need (reconcile would repair it, but only later)."""

from django.contrib import admin

from portal.admin import ReadOnlyAdmin
from sipsync.models import DocumentVersion, OutboxEntry, ProvisioningStatus, SipEvent


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

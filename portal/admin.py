from django.contrib import admin

from portal.models import AuditLogEntry


class ReadOnlyAdmin(admin.ModelAdmin):
    """A screen for rows only services write: nothing is added, changed or deleted here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(ReadOnlyAdmin):
    """Read-only: entries are written by `portal.audit.record` only."""

    list_display = ["at", "actor_name", "action", "object_repr", "customer"]
    list_filter = ["action"]
    search_fields = ["actor_name", "object_repr", "object_id"]
    date_hierarchy = "at"
    list_select_related = ["customer"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

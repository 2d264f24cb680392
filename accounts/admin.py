"""Admin: API tokens (revoke only), login failures (unlock), the audit trail."""

from django.contrib import admin
from django.http import HttpRequest

from accounts.models import ApiToken, AuditEvent, LoginFailure

admin.site.site_header = "jserver administration"
admin.site.site_title = "jserver admin"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created by their owners; staff can see and revoke them."""

    list_display = ["name", "user", "prefix", "created", "last_used", "expires_at"]
    list_filter = ["created", "last_used"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = ["user", "name", "prefix", "created", "last_used", "expires_at"]
    exclude = ["digest"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(LoginFailure)
class LoginFailureAdmin(admin.ModelAdmin):
    """Recent failed logins; deleting them unlocks a throttled account or address."""

    list_display = ["at", "username", "address"]
    search_fields = ["username", "address"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, read-only: nobody edits history."""

    list_display = ["at", "actor_name", "action", "target", "address"]
    list_filter = ["action", "at"]
    search_fields = ["actor_name", "action", "target", "address"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

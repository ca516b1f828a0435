"""Staff admin for applications, credentials, grants, audit events, kill switches and alerts.

Token material and secrets are never shown (EncryptedFieldsAdminMixin masks them and keeps them out
of every form). State changes go through services, never through a form, so each is audited with
the staff user: refresh now and revoke on grants, the kill switch on applications and switches.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tokens.audit import Actor
from tokens.encryption.admin import EncryptedFieldsAdminMixin
from tokens.failures import Failure
from tokens.killswitch import kill_switch_set
from tokens.models import (
    Application,
    ApplicationCredential,
    AuditEvent,
    ConsentGrant,
    KillSwitch,
    OperatorAlert,
)
from tokens.operations import GrantNotRefreshable, grant_refresh_now
from tokens.vault import grant_revoke


def staff_actor(request: HttpRequest) -> Actor:
    return Actor.staff(request.user.pk or "", request.META.get("REMOTE_ADDR"))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services only: staff may look, not add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    list_display = ["name", "client_id", "authority_host", "policy_days", "created_at"]
    search_fields = ["name", "client_id"]
    readonly_fields = ["created_at"]
    actions = ["kill_switch_engage", "kill_switch_release"]

    @admin.action(description="Engage the kill switch (suspend issuance) for the selected applications")
    def kill_switch_engage(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        for application in queryset:
            kill_switch_set(engaged=True, actor=staff_actor(request), application=application, reason="admin")
        self.message_user(
            request, f"Issuance suspended for {len(queryset)} application(s).", messages.WARNING
        )

    @admin.action(description="Release the kill switch (resume issuance) for the selected applications")
    def kill_switch_release(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        for application in queryset:
            kill_switch_set(
                engaged=False, actor=staff_actor(request), application=application, reason="admin"
            )
        self.message_user(request, f"Issuance resumed for {len(queryset)} application(s).")


@admin.register(ApplicationCredential)
class ApplicationCredentialAdmin(EncryptedFieldsAdminMixin, admin.ModelAdmin):
    # Credentials are added by `manage.py sync_application` (the secret never passes a form);
    # staff may only disable one.
    list_display = [
        "application",
        "kind",
        "certificate_thumbprint",
        "not_before",
        "expires_at",
        "disabled_at",
    ]
    list_filter = ["kind", "application", "expires_at"]
    list_select_related = ["application"]
    search_fields = ["application__name", "application__client_id", "certificate_thumbprint"]
    raw_id_fields = ["application"]
    fields = [
        "application",
        "kind",
        "secret",
        "key_vault_id",
        "certificate_thumbprint",
        "not_before",
        "expires_at",
        "disabled_at",
    ]
    readonly_fields = [
        "application",
        "kind",
        "key_vault_id",
        "certificate_thumbprint",
        "not_before",
        "expires_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ConsentGrant)
class ConsentGrantAdmin(EncryptedFieldsAdminMixin, ReadOnlyAdmin):
    list_display = [
        "partner", "application", "state", "policy_expires_at", "last_refreshed_at", "last_used_at",
        "failure_class", "consented_by_upn",
    ]  # fmt: skip
    list_filter = ["state", "application", "policy_expires_at", "failure_class"]
    list_select_related = ["partner", "application"]
    search_fields = ["partner__display_name", "partner__tenant_id", "consented_by_upn"]
    raw_id_fields = ["partner", "application"]
    readonly_fields = [
        "partner", "application", "state", "generation", "refresh_token", "audiences", "consented_by_upn",
        "consented_by_oid", "consented_by_role", "mfa_at_consent", "consented_at", "policy_expires_at",
        "last_refreshed_at", "last_used_at", "failure_class", "failure_code", "failure_message",
        "failure_count", "failed_at", "next_attempt_at", "created_at", "updated_at",
    ]  # fmt: skip
    actions = ["refresh_now", "revoke"]

    @admin.action(description="Refresh now (redeem the refresh token once)")
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> None:
        for grant in queryset.select_related("partner"):
            try:
                outcome = grant_refresh_now(grant=grant, actor=staff_actor(request))
            except GrantNotRefreshable as error:
                self.message_user(
                    request, f"{grant.partner.display_name}: not refreshed, {error}.", messages.ERROR
                )
                continue
            if isinstance(outcome, Failure):
                self.message_user(
                    request,
                    f"{grant.partner.display_name}: refresh failed ({outcome.failure_class}, {outcome.code}).",
                    messages.ERROR,
                )
            else:
                self.message_user(request, f"{grant.partner.display_name}: refreshed.")

    @admin.action(description="Revoke (destroy the refresh token; cached access tokens unusable at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> None:
        for grant in queryset:
            grant_revoke(grant=grant, actor=staff_actor(request), reason="revoked by staff in the admin")
        self.message_user(request, f"{len(queryset)} grant(s) revoked.", messages.WARNING)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = [
        "at", "action", "outcome", "actor_type", "actor_id", "partner", "application", "audience",
        "purpose", "error_code",
    ]  # fmt: skip
    list_filter = ["action", "outcome", "actor_type", "application", "at"]
    list_select_related = ["partner", "application"]
    search_fields = ["partner__display_name", "partner__tenant_id", "actor_id", "purpose", "error_code"]
    date_hierarchy = "at"
    # The audit trail can be long: no COUNT(*) of the unfiltered table on every page.
    show_full_result_count = False


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "engaged", "reason", "changed_at"]
    list_select_related = ["application"]
    actions = ["engage", "release"]

    @admin.action(description="Engage (suspend issuance)")
    def engage(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        for switch in queryset.select_related("application"):
            kill_switch_set(
                engaged=True, actor=staff_actor(request), application=switch.application, reason="admin"
            )
        self.message_user(request, "Issuance suspended.", messages.WARNING)

    @admin.action(description="Release (resume issuance)")
    def release(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        for switch in queryset.select_related("application"):
            kill_switch_set(
                engaged=False, actor=staff_actor(request), application=switch.application, reason="admin"
            )
        self.message_user(request, "Issuance resumed.")


@admin.register(OperatorAlert)
class OperatorAlertAdmin(ReadOnlyAdmin):
    list_display = [
        "code",
        "application",
        "message",
        "occurrences",
        "first_seen_at",
        "last_seen_at",
        "resolved_at",
    ]
    list_filter = ["application", "resolved_at"]
    list_select_related = ["application"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

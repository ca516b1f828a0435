"""Consent grants in the staff admin: a list that fits a laptop's screen (partner name, coloured
state, "lapses in N days"), filters by state and by policy lapse, and a grant's page titled in
words with Refresh now, Revoke (with a reason) and a link to its events.

Grants are written by services only: Refresh now is grant_refresh_now (the broker's one refresh
path), Revoke is grant_revoke; both audited with the staff user. Token material is never shown
(EncryptedFieldsAdminMixin).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from partners.search import partners_search, search_uuid
from tokens.audiences import audience_names
from tokens.encryption.admin import EncryptedFieldsAdminMixin
from tokens.issuance.failures import Failure, FailureClass
from tokens.issuance.vault import grant_revoke
from tokens.models import ConsentGrant
from tokens.staff_admin.badges import STATE_BADGES, badge
from tokens.staff_admin.base import ReadOnlyAdmin, staff_actor
from tokens.staff_admin.confirm import action_hidden_fields, reason_confirmed
from tokens.staff_admin.operations import GrantNotRefreshable, grant_refresh_now

State = ConsentGrant.State

REFRESHABLE_STATES = (State.ACTIVE, State.EXPIRING)  # as tokens.staff_admin.operations.grant_refresh_now
ENDED_STATES = (State.REVOKED, State.EXPIRED)
LAPSING_WINDOWS_DAYS = (7, 30)
LAPSED = "lapsed"


def grant_title(grant: ConsentGrant) -> str:
    return f"{grant.application.name} for {grant.partner.display_name}"


def lapse_describe(*, expires_at: datetime, now: datetime) -> str:
    """The policy lapse in words: "lapses in N days" (rounded up, so that a grant said to lapse in
    7 days is in the 7-day filter) or "lapsed N days ago" (whole days past)."""
    remaining = expires_at - now
    if remaining >= timedelta(0):
        days = math.ceil(remaining / timedelta(days=1))
        return "lapses within a day" if days <= 1 else f"lapses in {days} days"
    days = (-remaining).days
    if days == 0:
        return "lapsed under a day ago"
    return f"lapsed {days} day{'' if days == 1 else 's'} ago"


def _exact(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _lapse_text(grant: ConsentGrant) -> str:
    if grant.state == State.REVOKED:  # ended by a person: the policy expiry no longer matters
        return "—"
    return lapse_describe(expires_at=grant.policy_expires_at, now=timezone.now())


def _ago(when: datetime | None, now: datetime) -> SafeString | str:
    if when is None:
        return "never"
    if now - when < timedelta(minutes=1):
        return format_html('<span class="when" title="{}">just now</span>', _exact(when))
    return format_html(
        '<span class="when" title="{}">{} ago</span>', _exact(when), timesince(when, now, depth=1)
    )


class StateFilter(admin.SimpleListFilter):
    """`?state=<value>`, as the admin home links to each state's count."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state.value, STATE_BADGES[state][1]) for state in State]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> QuerySet[ConsentGrant]:
        return queryset.filter(state=self.value()) if self.value() else queryset


class LapsesFilter(admin.SimpleListFilter):
    """`?lapses=7` and `?lapses=30`: live grants whose policy lapses within that many days (as the
    health summary counts them); `?lapses=lapsed`: grants whose policy expiry has passed. Any
    other value filters nothing."""

    title = "policy lapse"
    parameter_name = "lapses"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(days), f"In the next {days} days") for days in LAPSING_WINDOWS_DAYS] + [
            (LAPSED, "Lapsed")
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> QuerySet[ConsentGrant]:
        now = timezone.now()
        if self.value() == LAPSED:
            return queryset.filter(policy_expires_at__lt=now)
        windows = {str(days): days for days in LAPSING_WINDOWS_DAYS}
        if self.value() in windows:
            return queryset.filter(
                state__in=ConsentGrant.ISSUABLE_STATES,
                policy_expires_at__gte=now,
                policy_expires_at__lt=now + timedelta(days=windows[str(self.value())]),
            )
        return queryset


class FailureClassFilter(admin.SimpleListFilter):
    """The failure classes from their definition: the default filter would read DISTINCT
    failure_class over every grant on each page."""

    title = "failure class"
    parameter_name = "failure_class"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(cls.value, cls.value) for cls in FailureClass]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> QuerySet[ConsentGrant]:
        return queryset.filter(failure_class=self.value()) if self.value() else queryset


@admin.register(ConsentGrant)
class ConsentGrantAdmin(EncryptedFieldsAdminMixin, ReadOnlyAdmin):
    # Four columns, so that the list fits beside the navigation and the filters at 1280 px: the
    # application under the partner, the failure under the state, the last use under the refresh.
    list_display = ["partner_name", "state_badge", "lapse", "activity"]
    list_display_links = ["partner_name"]
    list_filter = [StateFilter, LapsesFilter, "application", FailureClassFilter]
    # Rendering the rows is most of a page's time (bench/scale.py): 50 a page, not 100.
    list_per_page = 50
    show_full_result_count = False  # one COUNT of the grants per page, not two
    list_select_related = ["partner", "application"]
    # Searched through indexes only (get_search_results): a partner's name or tenant id, a grant id.
    search_fields = ["partner__display_name"]
    search_help_text = (
        "A partner's name (its beginning) or tenant id, a grant or partner id, or the consenting admin's UPN."
    )
    raw_id_fields = ["partner", "application"]
    fieldsets = [
        (None, {"fields": ["partner", "application", "state_badge", "lapse_detail", "audiences_words"]}),
        (
            "Consent",
            {
                "fields": [
                    "consented_by_upn",
                    "consented_by_role",
                    "mfa_at_consent",
                    "consented_at",
                    "consented_by_oid",
                ]
            },
        ),
        (
            "Renewal",
            {
                "fields": [
                    "last_refreshed_at",
                    "last_used_at",
                    "failure_class",
                    "failure_code",
                    "failure_message",
                    "failure_count",
                    "failed_at",
                    "next_attempt_at",
                ]
            },
        ),
        (
            "Record",
            {"fields": ["generation", "refresh_token", "created_at", "updated_at"], "classes": ["collapse"]},
        ),
    ]
    readonly_fields = [
        "partner", "application", "state_badge", "lapse_detail", "audiences_words", "generation",
        "refresh_token", "consented_by_upn", "consented_by_oid", "consented_by_role", "mfa_at_consent",
        "consented_at", "last_refreshed_at", "last_used_at", "failure_class", "failure_code",
        "failure_message", "failure_count", "failed_at", "next_attempt_at", "created_at", "updated_at",
    ]  # fmt: skip
    actions = ["refresh_now", "revoke"]

    # --- the list ----------------------------------------------------------------------------

    @admin.display(description="Partner and application", ordering="partner__display_name")
    def partner_name(self, grant: ConsentGrant) -> SafeString:
        return format_html(
            '<span title="Tenant {}">{}</span><span class="row-note">{}</span>',
            grant.partner.tenant_id,
            grant.partner.display_name,
            grant.application.name,
        )

    @admin.display(description="State", ordering="state")
    def state_badge(self, grant: ConsentGrant) -> SafeString:
        tone, word = STATE_BADGES[grant.state]
        shown = badge(word, tone, title=grant.get_state_display())
        if not grant.failure_class:
            return shown
        return format_html(
            '{}<span class="row-note" title="{}">{} failure, {}</span>',
            shown,
            grant.failure_message,
            grant.failure_class,
            grant.failure_code,
        )

    @admin.display(description="Policy", ordering="policy_expires_at")
    def lapse(self, grant: ConsentGrant) -> SafeString:
        return format_html('<span title="{}">{}</span>', _exact(grant.policy_expires_at), _lapse_text(grant))

    @admin.display(description="Refreshed, used", ordering="last_refreshed_at")
    def activity(self, grant: ConsentGrant) -> SafeString:
        now = timezone.now()
        return format_html(
            'refreshed {}<span class="row-note">used {}</span>',
            _ago(grant.last_refreshed_at, now),
            _ago(grant.last_used_at, now),
        )

    # --- a grant's page ----------------------------------------------------------------------

    @admin.display(description="Policy expiry")
    def lapse_detail(self, grant: ConsentGrant) -> str:
        if grant.state == State.REVOKED:
            return _exact(grant.policy_expires_at)
        return f"{_exact(grant.policy_expires_at)} ({_lapse_text(grant)})"

    @admin.display(description="Audiences")
    def audiences_words(self, grant: ConsentGrant) -> str:
        return ", ".join(audience_names(grant.audiences)) or "—"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ConsentGrant], search_term: str
    ) -> tuple[QuerySet[ConsentGrant], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        partners = partners_search(term=term).values("id")
        as_uuid = search_uuid(term)
        if as_uuid is not None:
            return queryset.filter(Q(pk=as_uuid) | Q(partner_id__in=partners)), False
        if "@" in term:  # the consenting admin's UPN, whole (index on its upper case)
            return queryset.filter(consented_by_upn__iexact=term), False
        return queryset.filter(partner_id__in=partners), False

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<uuid:grant_id>/refresh/",
                self.admin_site.admin_view(self.refresh_view),
                name="tokens_consentgrant_refresh",
            ),
            path(
                "<uuid:grant_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="tokens_consentgrant_revoke",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(request, {"title": "Consent grants", **(extra_context or {})})

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        grant = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if grant is not None:
            operate = self.has_operate_permission(request)
            context |= {
                "title": grant_title(grant),
                "subtitle": None,
                "can_refresh": operate and grant.state in REFRESHABLE_STATES,
                "can_revoke": operate and grant.state not in ENDED_STATES,
            }
        return super().change_view(request, object_id, form_url, context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ConsentGrant]:
        return super().get_queryset(request).select_related("partner", "application")

    # --- Refresh now and Revoke --------------------------------------------------------------

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Refresh now and revoke change a grant: for staff who may change grants (the admin's
        forms never do; services do)."""
        return bool(request.user.has_perm("tokens.change_consentgrant"))

    def _grant_for_operation(self, request: HttpRequest, grant_id: uuid.UUID) -> ConsentGrant:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        grant = self.get_queryset(request).filter(pk=grant_id).first()
        if grant is None:
            raise Http404("No such grant.")
        return grant

    def _refresh(self, request: HttpRequest, grant: ConsentGrant) -> None:
        title = grant_title(grant)
        try:
            outcome = grant_refresh_now(grant=grant, actor=staff_actor(request))
        except GrantNotRefreshable as error:
            self.message_user(request, f"{title}: not refreshed, {error}.", messages.ERROR)
            return
        if isinstance(outcome, Failure):
            self.message_user(
                request, f"{title}: refresh failed ({outcome.failure_class}, {outcome.code}).", messages.ERROR
            )
        else:
            self.message_user(request, f"{title}: refreshed.")

    def refresh_view(self, request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        grant = self._grant_for_operation(request, grant_id)
        self._refresh(request, grant)
        return HttpResponseRedirect(reverse("admin:tokens_consentgrant_change", args=[grant.pk]))

    def revoke_view(self, request: HttpRequest, grant_id: uuid.UUID) -> HttpResponse:
        """GET: the confirmation page; POST: revoke once a reason is given (else the page again,
        saying the reason is required)."""
        grant = self._grant_for_operation(request, grant_id)
        back = reverse("admin:tokens_consentgrant_change", args=[grant.pk])
        title = grant_title(grant)
        if grant.state in ENDED_STATES:
            self.message_user(
                request, f"{title} is {grant.get_state_display().lower()} already.", messages.INFO
            )
            return HttpResponseRedirect(back)
        reason = reason_confirmed(
            request,
            title=f"Revoke {title}",
            explanation="The refresh token is destroyed at once and cached access tokens stop being served. "
            "The partner is told by e-mail and must consent again to use the application.",
            button="Revoke",
            objects=[title],
            cancel_url=back,
        )
        if isinstance(reason, HttpResponse):
            return reason
        grant_revoke(grant=grant, actor=staff_actor(request), reason=reason)
        self.message_user(request, f"{title}: revoked.", messages.WARNING)
        return HttpResponseRedirect(back)

    @admin.action(description="Refresh now (redeem the refresh token once)", permissions=["operate"])
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> None:
        for grant in queryset.select_related("partner", "application"):
            self._refresh(request, grant)

    @admin.action(description="Revoke, with a reason (destroys the refresh token)", permissions=["operate"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ConsentGrant]) -> HttpResponse | None:
        grants = list(queryset.select_related("partner", "application"))
        reason = reason_confirmed(
            request,
            title="Revoke grants",
            explanation="The refresh tokens are destroyed at once and cached access tokens stop being served. "
            "Each partner is told by e-mail and must consent again.",
            button="Revoke",
            objects=[grant_title(grant) for grant in grants],
            hidden=action_hidden_fields(request, "revoke"),
        )
        if isinstance(reason, HttpResponse):
            return reason
        for grant in grants:
            grant_revoke(grant=grant, actor=staff_actor(request), reason=reason)
        self.message_user(request, f"{len(grants)} grant(s) revoked.", messages.WARNING)
        return None

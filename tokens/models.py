from __future__ import annotations

import ipaddress
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone

from partners.models import AgentRole, Partner
from tokens.encryption.fields import EncryptedTextField


class Application(models.Model):
    """A marketplace application registration that partners consent to."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    client_id = models.CharField(max_length=64, unique=True)
    authority_host = models.URLField(help_text="https://login.microsoftonline.com, or the sandbox.")
    authority_tenant = models.CharField(
        max_length=64, default="organizations", help_text="Tenant segment used for consent."
    )
    redirect_uri = models.URLField()
    audiences = models.JSONField(
        default=dict,
        help_text='Audience name to scopes, e.g. {"graph": ["https://graph.microsoft.com/.default"]}.',
    )
    consent_audience = models.CharField(
        max_length=64,
        default="partner_center",
        help_text="The audience the authorization code is redeemed for.",
    )
    policy_days = models.PositiveIntegerField(
        default=90, help_text="Time-bound access: days until consent lapses."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.authority_tenant}"

    def scopes_for(self, audience: str) -> list[str]:
        return list(self.audiences.get(audience, []))


class ApplicationCredential(models.Model):
    """A client secret or certificate of an application. Several may be valid at once so that
    a new one can be added, proven, and the old one retired (rotation with overlap)."""

    class Kind(models.TextChoices):
        SECRET = "secret", "Client secret"
        CERTIFICATE = "certificate", "Certificate"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="credentials")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The secret value, or the certificate's PEM private key.
    secret = EncryptedTextField()
    certificate_pem = models.TextField(blank=True, help_text="Public certificate (PEM), for certificates.")
    certificate_thumbprint = models.CharField(max_length=64, blank=True)
    not_before = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-not_before"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.application_id} until {self.expires_at:%Y-%m-%d}"


class ConsentGrant(models.Model):
    """A partner's consent to an application, and the refresh token it produced (encrypted)."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRING = "expiring", "Expiring soon"
        NEEDS_RENEWAL = "needs_renewal", "Needs renewal by the partner"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    Role = AgentRole

    ISSUABLE_STATES = (State.ACTIVE, State.EXPIRING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="grants")
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="grants")
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE, db_index=True)
    # Bumped by renew and revoke: cached access tokens carry it in their key, so every process
    # stops serving the old ones at once.
    generation = models.PositiveIntegerField(default=1)

    consented_by_oid = models.UUIDField()
    consented_by_upn = models.CharField(max_length=254)
    consented_by_role = models.CharField(max_length=16, choices=Role.choices)
    mfa_at_consent = models.BooleanField()
    consented_at = models.DateTimeField()
    audiences = models.JSONField(default=list, help_text="Audience names proven at consent.")
    policy_expires_at = models.DateTimeField(db_index=True)

    # The newest refresh token. NULL for revoked and expired grants: they hold no token material
    # (a constraint enforces it; an encrypted empty string would still be a ciphertext).
    refresh_token = EncryptedTextField(null=True, blank=True)

    last_refreshed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    failure_class = models.CharField(max_length=16, blank=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    failed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Set by the renewal sweep when it enqueues the grant: later sweeps leave it alone until then,
    # so a slow queue does not fill with duplicates (a lost task is picked up once it lapses).
    renewal_enqueued_until = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["partner", "application"], name="one_grant_per_partner_and_app"),
            models.CheckConstraint(
                condition=~Q(state__in=["revoked", "expired"]) | Q(refresh_token__isnull=True),
                name="ended_grants_hold_no_token",
            ),
        ]
        indexes = [
            # Staff search grants by the consenting admin's UPN, whole, in any case (tokens/admin.py).
            models.Index(Upper("consented_by_upn"), name="grant_upn_upper"),
            # The health page counts the grants lapsing soon by state: index-only (bench/scale.py).
            models.Index(fields=["state", "policy_expires_at"], name="grant_state_expiry"),
        ]

    def __str__(self) -> str:
        return f"Grant of {self.partner_id} to {self.application_id} ({self.state})"

    @property
    def is_issuable(self) -> bool:
        return self.state in self.ISSUABLE_STATES


class KillSwitch(models.Model):
    """Suspends all access-token issuance: for one application, or for all (application null)."""

    application = models.OneToOneField(
        Application, null=True, blank=True, on_delete=models.CASCADE, related_name="kill_switch"
    )
    engaged = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application"], condition=Q(application=None), name="one_global_kill_switch"
            )
        ]

    def __str__(self) -> str:
        scope = self.application.name if self.application else "all applications"
        return f"Kill switch for {scope}: {'engaged' if self.engaged else 'released'}"


class OperatorAlert(models.Model):
    """An application-level failure that no partner can fix. One open alert per (app, code)."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="alerts")
    code = models.CharField(max_length=64)
    message = models.CharField(max_length=500)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "code"], condition=Q(resolved_at=None), name="one_open_alert_per_code"
            )
        ]

    def __str__(self) -> str:
        return f"{self.code} on {self.application_id}"


class AuditEvent(models.Model):
    """Append-only trail of everything done with a grant. On PostgreSQL a trigger rejects UPDATE
    and DELETE. Holds no secrets: purposes, codes and identifiers only."""

    class ActorType(models.TextChoices):
        SERVICE = "service", "Service client"
        STAFF = "staff", "Staff user"
        PARTNER_USER = "partner_user", "Partner user"
        SYSTEM = "system", "System"

    class Action(models.TextChoices):
        CONSENTED = "consented", "Consented"
        RENEWED = "renewed", "Renewed (consent again)"
        TOKEN_ISSUED = "token_issued", "Access token issued"
        TOKEN_DENIED = "token_denied", "Access token refused"
        REFRESHED = "refreshed", "Refresh token redeemed"
        REFRESH_FAILED = "refresh_failed", "Refresh failed"
        STATE_CHANGED = "state_changed", "State changed"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"
        CONSENT_FAILED = "consent_failed", "Consent failed"
        KILL_SWITCH_ENGAGED = "kill_switch_engaged", "Issuance suspended"
        KILL_SWITCH_RELEASED = "kill_switch_released", "Issuance resumed"
        PARTNER_SUSPENDED = "partner_suspended", "Partner suspended"
        PARTNER_RESUMED = "partner_resumed", "Partner resumed"
        OPERATOR_ALERT = "operator_alert", "Operator alerted"
        AUDIT_PARTITION_DROPPED = "audit_partition_dropped", "Audit events past retention dropped"

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        DENIED = "denied", "Denied"

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=128, blank=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    # No single-column index on partner or application: the composite indexes below lead with them.
    partner = models.ForeignKey(
        Partner, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    grant = models.ForeignKey(ConsentGrant, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    application = models.ForeignKey(
        Application, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    audience = models.CharField(max_length=64, blank=True)
    customer_tenant_id = models.UUIDField(null=True, blank=True)
    purpose = models.CharField(max_length=500, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        # Every list of the trail is newest first and paged by key (at, id): each index ends with
        # -at, -id, so a page is a range scan that stops after one page, whatever the table's size
        # (bench/scale.py prints the plans). Outcome is included for index-only filtered counts.
        indexes = [
            models.Index(fields=["-at", "-id"], name="audit_recent"),
            models.Index(fields=["partner", "-at", "-id"], include=["outcome"], name="audit_partner_at_id"),
            models.Index(
                fields=["partner", "action", "-at", "-id"], include=["outcome"], name="audit_partner_action"
            ),
            models.Index(fields=["action", "-at", "-id"], name="audit_action_recent"),
            models.Index(fields=["application", "-at", "-id"], name="audit_application_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"


class ServiceClient(models.Model):
    """An internal service of the CPV allowed to ask the token API for access tokens.

    Its key is `samcp_<key_id>_<secret>`: the key id finds the row, and only the SHA-256 digest of
    the whole key is stored. The plaintext is shown once, when the key is issued."""

    name = models.CharField(
        max_length=100, unique=True, help_text="Recorded as the actor in the audit trail."
    )
    key_id = models.CharField(max_length=32, unique=True, editable=False)
    key_digest = models.CharField(max_length=64, editable=False)
    audiences = models.JSONField(default=list, help_text='Audience names it may ask for, e.g. ["graph"].')
    partners = models.ManyToManyField(
        Partner, blank=True, related_name="+", help_text="Partners it may act for; none means all partners."
    )
    cidrs = models.JSONField(
        default=list, blank=True, help_text='Source networks allowed, e.g. ["10.0.0.0/8"]; empty means any.'
    )
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    disabled_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.audiences, list) or not self.audiences:
            errors["audiences"] = "List at least one audience name."
        else:
            unknown = sorted(set(map(str, self.audiences)) - set(settings.SAM_AUDIENCES))
            if unknown:
                errors["audiences"] = f"Unknown audiences: {', '.join(unknown)} (see SAM_AUDIENCES)."
        if not isinstance(self.cidrs, list):
            errors["cidrs"] = 'A list of networks, e.g. ["10.0.0.0/8"].'
        else:
            try:
                # strict=False: "10.1.2.3/8" means the network 10.0.0.0/8, as operators write it.
                cidrs: list[str] = [str(ipaddress.ip_network(str(cidr), strict=False)) for cidr in self.cidrs]
                self.cidrs = cidrs
            except ValueError as error:
                errors["cidrs"] = str(error)
        if errors:
            raise ValidationError(errors)


class Notification(models.Model):
    """An e-mail sent to a partner about one condition of one grant generation. The unique
    constraint is what makes "at most once" hold when two workers notice the same condition."""

    id = models.BigAutoField(primary_key=True)
    grant = models.ForeignKey(ConsentGrant, on_delete=models.CASCADE, related_name="notifications")
    # "needs_renewal", or "expires_in_<n>_days" for each of RENEWAL_EXPIRY_WARNING_DAYS.
    condition = models.CharField(max_length=32)
    # Consent again bumps the generation, so the renewed grant can be notified afresh.
    generation = models.PositiveIntegerField()
    recipient = models.CharField(max_length=254)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "condition", "generation"], name="one_notification_per_condition"
            )
        ]

    def __str__(self) -> str:
        return f"{self.condition} for {self.grant_id} (generation {self.generation})"

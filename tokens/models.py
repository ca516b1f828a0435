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
    # When the sweep last redeemed one grant as a probe while a credential alert paused renewal:
    # a conditional UPDATE on it admits at most one probe per RENEWAL_PROBE_MINUTES.
    probed_at = models.DateTimeField(null=True, blank=True, editable=False)
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
        # The application's credential kept apart from partner secrets (docs/encryption.md): the
        # secret is read from Key Vault; the certificate's private key never leaves Key Vault, which
        # signs each client assertion. `secret` is empty for both: only `key_vault_id` is stored.
        KEY_VAULT_SECRET = "keyvault_secret", "Client secret in Key Vault"
        KEY_VAULT_CERTIFICATE = "keyvault_certificate", "Certificate, key in Key Vault"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="credentials")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    # The secret value, or the certificate's PEM private key (empty for the Key Vault kinds).
    secret = EncryptedTextField(blank=True)
    key_vault_id = models.URLField(
        max_length=500,
        blank=True,
        help_text="Key Vault secret id (https://<vault>/secrets/<name>[/<version>]) or key id "
        "(https://<vault>/keys/<name>/<version>), for the Key Vault kinds.",
    )
    certificate_pem = models.TextField(blank=True, help_text="Public certificate (PEM), for certificates.")
    certificate_thumbprint = models.CharField(max_length=64, blank=True)
    not_before = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Set when Entra refused this credential while another one of the application still worked:
    # staff must look at it. Redemptions try it last until it is added again or disabled.
    refused_at = models.DateTimeField(null=True, blank=True)
    refused_code = models.CharField(max_length=64, blank=True)
    # The smallest CREDENTIAL_EXPIRY_WARNING_DAYS threshold already alerted for (once each).
    expiry_warned_days = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Newest added first: that is the current credential (not `not_before`, which for a
        # certificate is its validity start and says nothing about when it was added).
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.application_id} until {self.expires_at:%Y-%m-%d}"


class ConsentGrant(models.Model):
    """A partner's consent to an application, and the refresh token it produced (encrypted)."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRING = "expiring", "Expiring soon"
        NEEDS_RENEWAL = "needs_renewal", "Needs renewal by the partner"
        # An error code nobody has classified: still tried (with backoff) and still issuable,
        # but staff must look at it.
        NEEDS_ATTENTION = "needs_attention", "Needs attention by staff"
        REVOKED = "revoked", "Revoked"
        EXPIRED = "expired", "Expired"

    Role = AgentRole

    ISSUABLE_STATES = (State.ACTIVE, State.EXPIRING, State.NEEDS_ATTENTION)

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


class CachedAccessToken(models.Model):
    """An access token the broker got for one grant generation, audience and customer tenant,
    sealed with the vault's keyset (bound to its grant, generation, audience and customer), kept
    until five minutes before it expires. On PostgreSQL the table is UNLOGGED: it is a cache, lost
    on a crash (every process then refreshes once), and the hit path reads it in the same statement
    that checks the grant and writes the audit row (tokens.issuance.broker)."""

    id = models.BigAutoField(primary_key=True)
    # The unique constraint's index starts with grant_id: no second index for the foreign key.
    grant = models.ForeignKey(ConsentGrant, on_delete=models.CASCADE, related_name="+", db_index=False)
    generation = models.PositiveIntegerField()
    audience = models.CharField(max_length=64)
    # The customer tenant id, lower case; empty for the partner's own tenant.
    customer = models.CharField(max_length=36, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    sealed = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "generation", "audience", "customer"], name="one_cached_token_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"Cached {self.audience} token of {self.grant_id} (generation {self.generation})"


class KillSwitch(models.Model):
    """Suspends all access-token issuance: for one application, or for all (application null)."""

    application = models.OneToOneField(
        Application, null=True, blank=True, on_delete=models.CASCADE, related_name="kill_switch"
    )
    engaged = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "kill switches"
        constraints = [
            models.UniqueConstraint(
                fields=["application"], condition=Q(application=None), name="one_global_kill_switch"
            )
        ]

    def __str__(self) -> str:
        scope = self.application.name if self.application else "all applications"
        return f"Kill switch for {scope}: {'engaged' if self.engaged else 'released'}"


class OperatorAlert(models.Model):
    """Something staff must look at. One open alert per (app, code).

    Only an alert about the application's own credential `pauses` renewal of its grants (every
    redemption would fail alike); the sweep then sends one probe per RENEWAL_PROBE_MINUTES, and
    the first redemption that succeeds closes it. Other alerts (an unknown error code, a refused
    credential another one replaced, a credential near expiry) pause nothing."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="alerts")
    code = models.CharField(max_length=64)
    message = models.CharField(max_length=500)
    pauses = models.BooleanField(default=False)
    occurrences = models.PositiveIntegerField(default=1)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=128, blank=True)
    resolution = models.CharField(max_length=500, blank=True)

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
        ALERT_CLOSED = "alert_closed", "Operator alert closed"
        CONTACT_ADDED = "contact_added", "Notification contact added"
        CONTACT_REMOVED = "contact_removed", "Notification contact removed"
        # Staff changes in the admin (tokens/staff_admin/staff_changes.py); `detail` says what changed.
        SERVICE_CLIENT_CREATED = "service_client_created", "Service client created"
        SERVICE_CLIENT_CHANGED = "service_client_changed", "Service client changed"
        SERVICE_CLIENT_DISABLED = "service_client_disabled", "Service client disabled"
        SERVICE_CLIENT_ENABLED = "service_client_enabled", "Service client enabled"
        APPLICATION_CREATED = "application_created", "Application created"
        APPLICATION_CHANGED = "application_changed", "Application changed"
        CREDENTIAL_ADDED = "credential_added", "Credential added"
        CREDENTIAL_CHANGED = "credential_changed", "Credential changed"
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
    # Comma-separated: the consenting user and the partner's notification contacts at the time.
    recipient = models.CharField(max_length=2000)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["grant", "condition", "generation"], name="one_notification_per_condition"
            )
        ]

    def __str__(self) -> str:
        return f"{self.condition} for {self.grant_id} (generation {self.generation})"


class NotificationContact(models.Model):
    """An address that receives the partner's grant e-mails besides the consenting user's. Admin
    agents edit the list on the dashboard (audited)."""

    id = models.BigAutoField(primary_key=True)
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="notification_contacts")
    email = models.EmailField(max_length=254)
    added_by = models.CharField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(fields=["partner", "email"], name="one_contact_per_partner_and_email")
        ]

    def __str__(self) -> str:
        return self.email


class SweepHeartbeat(models.Model):
    """When each periodic job last ran (one row per job name): the health page and /healthz/renewal
    read it, so a stopped beat is seen. In the database, not the cache: a cache flush would
    report a healthy beat as never run."""

    name = models.CharField(max_length=64, primary_key=True)
    last_run_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.last_run_at:%Y-%m-%d %H:%M:%S}"

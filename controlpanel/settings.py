"""The one settings module. Every value comes from the environment through django-environ.

Defaults are the embedded demo configuration (SQLite, local-memory cache, filesystem broker, the
sandbox as identity provider). `controlpanel.checks` refuses those defaults when DEBUG is off.
Every variable is documented in `.env.example`.
"""

from __future__ import annotations

from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent

# Marker value: the system check refuses it in production.
INSECURE_DEFAULT_SECRET_KEY = "insecure-demo-secret-key-change-me"  # noqa: S105

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the demo keeps its files: SQLite database, broker, keyset, the sandbox's CA and keys, logs.
VAR_DIR = Path(env.str("VAR_DIR", default="") or BASE_DIR / "var").resolve()

# "demo", "test" or "production"; production turns on the strict system checks.
ENVIRONMENT = env.str("ENVIRONMENT", default="demo")
DEBUG = env.bool("DEBUG", default=ENVIRONMENT != "production")
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_DEFAULT_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    # Only for its TOTP arithmetic and the one-off move of old seeds: staff devices are
    # controlpanel.StaffTOTPDevice (seed encrypted); this app's table stays empty.
    "django_otp.plugins.otp_totp",
    "axes",
    "csp",
    "controlpanel",
    "console",
    "tokens",
    "partners",
    "gdap",
    "sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "controlpanel.csp.ContentSecurityPolicyMiddleware",
    # The service API's 413, 405 and unauthenticated 429, as problem+json (tokens/service_api/api_edges.py).
    "tokens.service_api.api_edges.ServiceApiEdgesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Marks request.user verified when the session carries a confirmed OTP device (staff MFA).
    "django_otp.middleware.OTPMiddleware",
    "controlpanel.middleware.SessionExpiryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "controlpanel.urls"
WSGI_APPLICATION = "controlpanel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'controlpanel.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo database, written by the web process and the worker at once. WAL lets readers run
    # beside the one writer; IMMEDIATE takes the write lock when a transaction begins, so a
    # transaction never fails half-way upgrading a read lock ("database is locked" at once, which
    # the busy timeout cannot help: SQLite returns SQLITE_BUSY without waiting to avoid a
    # deadlock); the timeout makes the next writer wait instead of failing.
    # https://www.sqlite.org/wal.html, https://www.sqlite.org/lang_transaction.html,
    # https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-transaction-behavior
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT_SECONDS", default=20),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The audit trail's indexes INCLUDE a column for index-only counts on PostgreSQL; SQLite (the demo)
# ignores INCLUDE, which is harmless there.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://controlpanel")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))

SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Sessions (partner dashboard and staff admin alike) end SESSION_ABSOLUTE_SECONDS after sign-in
# and after SESSION_IDLE_SECONDS without a request, whichever comes first
# (controlpanel.middleware.SessionExpiryMiddleware), and when the browser closes.
SESSION_ABSOLUTE_SECONDS = env.int("SESSION_ABSOLUTE_SECONDS", default=8 * 3600)
SESSION_IDLE_SECONDS = env.int("SESSION_IDLE_SECONDS", default=30 * 60)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_SECONDS
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# Behind a TLS-terminating proxy, Django sees plain HTTP: BEHIND_TLS_PROXY=true trusts the proxy's
# X-Forwarded-Proto (the proxy must overwrite it on every request; docs/operations.md), so that
# request.is_secure() is true and the SSL redirect does not loop.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", False) else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# The health probe is asked over plain HTTP by load balancers and orchestrators.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Staff sign-in throttle (django-axes): after AXES_FAILURE_LIMIT failures for one username, or from
# one address, sign-in is refused for AXES_COOLOFF_MINUTES whatever is typed.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15.0) / 60
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "controlpanel.staff_login.staff_login_locked_out"
# The same REMOTE_ADDR the rest of the panel trusts (the proxy sets it; no X-Forwarded-For parsing).
AXES_CLIENT_IP_CALLABLE = "controlpanel.staff_login.client_address"
# django-otp: the issuer name shown in authenticator apps for staff TOTP devices.
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="SAM control panel")

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# For the file-based backend (worker tests read the e-mails workers send).
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="controlpanel@localhost")
OPERATOR_ALERT_EMAILS = env.list("OPERATOR_ALERT_EMAILS", default=[])

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_FILESYSTEM_DIR = env.path("CELERY_BROKER_FILESYSTEM_DIR", default=str(VAR_DIR / "broker"))
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(str(CELERY_BROKER_FILESYSTEM_DIR))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
    }
else:
    # Must exceed the longest countdown/ETA we schedule, or Redis redelivers early.
    # Unacknowledged tasks of a worker that died whole (kill -9, lost host) come back after
    # visibility_timeout; workers look for them every CELERY_UNACKED_RESTORE_SECONDS. The restore
    # runs under a Redis mutex that a worker killed mid-restore never releases: kombu's default
    # expiry (300 s) would hold back every redelivery that long, so it is shortened.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600),
        "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_SECONDS", 60),
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": env.int("CELERY_UNACKED_MUTEX_SECONDS", 30),
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=90)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every database connection before and after every task unless this
# is set, so a worker opened a PostgreSQL connection (a backend process) per task whatever
# DATABASE_CONN_MAX_AGE said. Set out of reach here; controlpanel/celery.py does instead what
# Django does around a request (close_old_connections: honours CONN_MAX_AGE, drops a broken one).
CELERY_DB_REUSE_MAX = 2**62
# One beat process per deployment runs these (docs/renewal.md). /healthz/renewal reports the
# beat stale when no sweep ran for two of these intervals.
RENEWAL_SWEEP_MINUTES = env.float("RENEWAL_SWEEP_MINUTES", default=5)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "renewal-sweep": {
        "task": "tokens.tasks.renewal_sweep_task",
        "schedule": 60.0 * RENEWAL_SWEEP_MINUTES,
    },
    "policy-expiry-sweep": {
        "task": "tokens.tasks.policy_expiry_sweep_task",
        "schedule": 60.0 * 60 * 24,
    },
    # Each partner's GDAP relationships, read again when older than GDAP_INVENTORY_REFRESH_MINUTES;
    # and the e-mails about relationships ending soon (docs/gdap.md).
    "gdap-inventory-sweep": {
        "task": "gdap.tasks.gdap_inventory_sweep_task",
        "schedule": 60.0 * RENEWAL_SWEEP_MINUTES,
    },
    # PostgreSQL: the audit trail's monthly partitions, created AUDIT_PARTITIONS_AHEAD_MONTHS ahead.
    "audit-partitions": {
        "task": "tokens.tasks.audit_partitions_ensure_task",
        "schedule": 60.0 * 60 * 24,
    },
}

# --- Service token API (docs/api.md) --------------------------------------------------------------
# A token request is a few hundred bytes; anything much larger is refused (413) unread.
SERVICE_API_MAX_BODY_BYTES = env.int("SERVICE_API_MAX_BODY_BYTES", default=16 * 1024)
# Requests refused as unauthenticated (401) per source address and minute; then 429 until the
# minute is over.
SERVICE_API_UNAUTHENTICATED_PER_MINUTE = env.int("SERVICE_API_UNAUTHENTICATED_PER_MINUTE", default=30)

# --- Renewal engine (docs/renewal.md) -------------------------------------------------------------
# Redeem each grant's refresh token when its last redemption is older than this. Entra kills a
# refresh token after 90 days unused; CIPP renews weekly, CloudBlue every 10 days.
RENEWAL_INTERVAL_DAYS = env.int("RENEWAL_INTERVAL_DAYS", default=7)
# At most this many grants are enqueued per sweep, spread over RENEWAL_SWEEP_SPREAD_SECONDS, so a
# backlog drains at a bounded rate instead of flooding the identity provider.
RENEWAL_SWEEP_CAP = env.int("RENEWAL_SWEEP_CAP", default=500)
RENEWAL_SWEEP_SPREAD_SECONDS = env.int("RENEWAL_SWEEP_SPREAD_SECONDS", default=240)
# An enqueued grant is not enqueued again for this long after its countdown (a lost task is
# picked up by a later sweep once the lease lapses).
RENEWAL_LEASE_SECONDS = env.int("RENEWAL_LEASE_SECONDS", default=900)
# Transient failures: capped exponential backoff, never sooner than the provider's Retry-After.
RENEWAL_RETRY_BASE_SECONDS = env.int("RENEWAL_RETRY_BASE_SECONDS", default=30)
RENEWAL_RETRY_MAX_SECONDS = env.int("RENEWAL_RETRY_MAX_SECONDS", default=1800)
RENEWAL_MAX_RETRIES = env.int("RENEWAL_MAX_RETRIES", default=8)
# Partners are e-mailed this many days before their grant's policy expiry (once each).
RENEWAL_EXPIRY_WARNING_DAYS = env.list("RENEWAL_EXPIRY_WARNING_DAYS", cast=int, default=[14, 3])
# While an application's credential alert is open its grants are not renewed; one grant is
# redeemed as a probe at most this often, and the first success closes the alert.
RENEWAL_PROBE_MINUTES = env.float("RENEWAL_PROBE_MINUTES", default=10)
# Operators are alerted this many days before an application credential expires (once each).
# CIPP renews its secrets when fewer than 30 days remain.
CREDENTIAL_EXPIRY_WARNING_DAYS = env.list("CREDENTIAL_EXPIRY_WARNING_DAYS", cast=int, default=[30, 7])

# --- GDAP customer relationships (docs/gdap.md) ----------------------------------------------------
# Each partner's relationships are read from Graph again when the last attempt is older than this.
GDAP_INVENTORY_REFRESH_MINUTES = env.int("GDAP_INVENTORY_REFRESH_MINUTES", default=60)
# At most this many partners are enqueued per sweep; a refresh enqueued is not enqueued again for
# GDAP_LEASE_SECONDS (a lost task is picked up once the lease lapses).
GDAP_SWEEP_CAP = env.int("GDAP_SWEEP_CAP", default=200)
GDAP_LEASE_SECONDS = env.int("GDAP_LEASE_SECONDS", default=900)
# A customer-tenant request refused on the inventory asks for a new read when the last one is older
# than this, so that a relationship the partner has just renewed is seen within minutes.
GDAP_REFUSAL_REFRESH_MINUTES = env.int("GDAP_REFUSAL_REFRESH_MINUTES", default=5)
# Partners are e-mailed this many days before an active, not auto-extended relationship ends (once each).
GDAP_WARNING_DAYS = env.list("GDAP_WARNING_DAYS", cast=int, default=[30, 7])

# --- Audit trail (docs/operations.md, "Audit retention") ------------------------------------------
# `manage.py audit_retention` drops whole monthly partitions whose events are all older than this.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=400)
# Beat creates the monthly partitions this many months ahead (PostgreSQL).
AUDIT_PARTITIONS_AHEAD_MONTHS = env.int("AUDIT_PARTITIONS_AHEAD_MONTHS", default=3)

# --- Encryption at rest (Tink AEAD keysets) -----------------------------------------------------
# Either the cleartext JSON keyset itself, or a path to a file holding it. Never derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYSET = env.str("FIELD_ENCRYPTION_KEYSET", default="")
# Outside production, with neither set, the demo's keyset (written by `manage.py demo`), so that every
# command finds the keyset of the demo's data. Production names its keyset (check controlpanel.E010).
DEMO_KEYSET_FILE = VAR_DIR / "demo-keyset.json"
FIELD_ENCRYPTION_KEYSET_FILE = env.str("FIELD_ENCRYPTION_KEYSET_FILE", default="") or (
    "" if ENVIRONMENT == "production" or FIELD_ENCRYPTION_KEYSET else str(DEMO_KEYSET_FILE)
)

# --- Identity provider (Microsoft Entra ID, or the sandbox) ------------------------------------
SANDBOX_CA_BUNDLE = str(VAR_DIR / "sandbox" / "ca.pem")
IDENTITY_AUTHORITY_HOST = env.str("IDENTITY_AUTHORITY_HOST", default="https://127.0.0.1:8443")
# The CA bundle for TLS to the authority: the sandbox's own CA in the demo, the system bundle in production.
IDENTITY_CA_BUNDLE = env.str("IDENTITY_CA_BUNDLE", default=SANDBOX_CA_BUNDLE)
IDENTITY_HTTP_TIMEOUT = env.float("IDENTITY_HTTP_TIMEOUT", default=10.0)
# Production accepts only Microsoft's hosts for the authority, Graph and Partner Center
# (controlpanel/checks.py); hosts named here are accepted too (another cloud, an egress proxy).
# Loopback addresses are refused whatever this says.
IDENTITY_ALLOWED_HOSTS = env.list("IDENTITY_ALLOWED_HOSTS", default=[])

# django-csp: no inline script or style without this response's nonce, nothing from elsewhere.
# Forms post to this site only; the consent and sign-in starts redirect to the identity provider,
# which Chromium checks against form-action too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [NONE],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        # The admin's stylesheets use inline SVG icons.
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],  # and the identity provider: controlpanel.csp
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
    }
}

# --- Azure Key Vault (docs/encryption.md, docs/operations.md) -----------------------------------
# How the panel reaches Key Vault: as its host's managed identity (KEY_VAULT_CLIENT_ID names a
# user-assigned one), or, without managed identity, as an app registration whose certificate (PEM with
# its key) is at KEY_VAULT_CLIENT_CERTIFICATE_PATH, in KEY_VAULT_TENANT_ID. Not the SAM application.
KEY_VAULT_TENANT_ID = env.str("KEY_VAULT_TENANT_ID", default="")
KEY_VAULT_CLIENT_ID = env.str("KEY_VAULT_CLIENT_ID", default="")
KEY_VAULT_CLIENT_CERTIFICATE_PATH = env.str("KEY_VAULT_CLIENT_CERTIFICATE_PATH", default="")
# Empty means the identity provider's (as .env.example leaves them).
KEY_VAULT_AUTHORITY_HOST = env.str("KEY_VAULT_AUTHORITY_HOST", default="") or IDENTITY_AUTHORITY_HOST
KEY_VAULT_CA_BUNDLE = env.str("KEY_VAULT_CA_BUNDLE", default="") or IDENTITY_CA_BUNDLE
# The Azure SDK checks that the vault's challenge names a resource whose domain the vault URL is
# under (*.vault.azure.net); the sandbox's vault is not, so the sandbox turns this off.
KEY_VAULT_VERIFY_CHALLENGE_RESOURCE = env.bool("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", default=True)
KEY_VAULT_TIMEOUT = env.float("KEY_VAULT_TIMEOUT", default=10.0)

# Resource APIs called as the partner: the sandbox's stubs in the demo and tests.
GRAPH_BASE_URL = env.str("GRAPH_BASE_URL", default=IDENTITY_AUTHORITY_HOST)
PARTNER_CENTER_BASE_URL = env.str("PARTNER_CENTER_BASE_URL", default=IDENTITY_AUTHORITY_HOST)

# The marketplace application registration that partners consent to.
SAM_APP_CLIENT_ID = env.str("SAM_APP_CLIENT_ID", default="")
SAM_APP_CLIENT_SECRET = env.str("SAM_APP_CLIENT_SECRET", default="")
SAM_APP_CLIENT_SECRET_EXPIRES_AT = env.str("SAM_APP_CLIENT_SECRET_EXPIRES_AT", default="")
SAM_APP_CERTIFICATE_FILE = env.str("SAM_APP_CERTIFICATE_FILE", default="")
# The application's credential in Key Vault instead (docs/operations.md): a secret id
# (https://<vault>/secrets/<name>[/<version>]), or a certificate whose key stays in Key Vault: its key id
# (https://<vault>/keys/<name>/<version>) and the public certificate (PEM, no key) in a file.
SAM_APP_KEY_VAULT_SECRET_ID = env.str("SAM_APP_KEY_VAULT_SECRET_ID", default="")
SAM_APP_KEY_VAULT_KEY_ID = env.str("SAM_APP_KEY_VAULT_KEY_ID", default="")
SAM_APP_KEY_VAULT_CERTIFICATE_FILE = env.str("SAM_APP_KEY_VAULT_CERTIFICATE_FILE", default="")
SAM_APP_REDIRECT_URI = env.str("SAM_APP_REDIRECT_URI", default=f"{SITE_URL}/onboarding/callback/")
# Where the identity provider sends partners back after a dashboard sign-in; registered on the
# same application registration as SAM_APP_REDIRECT_URI.
DASHBOARD_SIGNIN_REDIRECT_URI = env.str(
    "DASHBOARD_SIGNIN_REDIRECT_URI", default=f"{SITE_URL}/dashboard/signin/callback/"
)
# Where Entra's v2 /adminconsent endpoint sends a partner's administrator back after granting
# tenant-wide consent (partners.admin_consent); registered on the same application registration.
SAM_APP_ADMIN_CONSENT_REDIRECT_URI = env.str(
    "SAM_APP_ADMIN_CONSENT_REDIRECT_URI", default=f"{SITE_URL}/onboarding/admin-consent/callback/"
)
# audience name -> scopes, e.g. {"partner_center": ["https://api.partnercenter.microsoft.com/user_impersonation"]}
SAM_AUDIENCES: dict[str, list[str]] = env.json(
    "SAM_AUDIENCES",
    default={
        "partner_center": ["https://api.partnercenter.microsoft.com/user_impersonation"],
        # The Secure Application Model's minimum for Graph, "Access the directory as the signed-in
        # user", and the read of the partner's GDAP relationships (docs/gdap.md), which it does not
        # cover. Named scopes only: Entra refuses `.default` mixed with named scopes (AADSTS70011).
        "graph": [
            "https://graph.microsoft.com/Directory.AccessAsUser.All",
            "https://graph.microsoft.com/DelegatedAdminRelationship.Read.All",
        ],
        "arm": ["https://management.azure.com/user_impersonation"],
    },
)

# Error reports (the technical 500 page with DEBUG on, mailed reports) hide secrets whatever DEBUG says.
DEFAULT_EXCEPTION_REPORTER_FILTER = "controlpanel.error_reports.SecretsExceptionReporterFilter"

# --- Metrics (docs/operations.md, "Metrics") ----------------------------------------------------
# GET /metrics answers only a scraper presenting this bearer token and/or coming from one of these
# networks (when both are set, both must hold; with neither, it refuses everyone). Checked in
# production. PROMETHEUS_MULTIPROC_DIR (read by prometheus-client itself) sums every process's counters.
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
METRICS_ALLOWED_CIDRS = env.list("METRICS_ALLOWED_CIDRS", default=[])

# --- Logging: one line per event, JSON in production, secrets redacted --------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "controlpanel.logging.RedactSecretsFilter"}},
    "formatters": {
        "text": {"()": "controlpanel.logging.TextFormatter"},
        "json": {"()": "controlpanel.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # MSAL logs request bodies at DEBUG; never let that through.
        "msal": {"level": "WARNING"},
        # The Azure SDK logs every request's URL and headers at INFO (azure-core's HttpLoggingPolicy,
        # authorization redacted), and azure-identity each token it gets: noise, held at WARNING.
        "azure": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # django-axes's start-up banner, at INFO in every process and command.
        "axes.apps": {"level": "WARNING"},
    },
}

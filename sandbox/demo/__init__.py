"""Identifiers and credentials of the shipped demo directory (`sandbox/directory.demo.toml`).

Public demo data, for tests, benchmarks and the demo: never a real secret.
"""

from pathlib import Path

from sandbox.catalog import PARTNER_ROLES

HERE = Path(__file__).resolve().parent

CLIENT_ID = "a00d0c2d-ced8-4a12-9527-bd8bca7177b8"
CLIENT_SECRET = "demo~SAMControlPanel.Secret-0001"  # noqa: S105 - public demo value
SECRET_KEY_ID = "cbf74414-a21c-413f-b016-6d95ae49eada"  # noqa: S105 - an id, not a secret
CERT_PATH = HERE / "app-cert.pem"
KEY_PATH = HERE / "app-key.pem"
CERT_SHA1_THUMBPRINT = "5662578b2af3d5d9419bdabc540e9226a2c0f8b7"
REDIRECT_URI = "http://127.0.0.1:8000/onboarding/callback/"

# The vendor's own tenant, its Key Vault (the sandbox's base URL) and the host identity that reaches it.
VENDOR_TENANT = "0f2b6c1e-5d3a-4c8e-9b7a-6e1d2c3b4a59"
HOST_CLIENT_ID = "5e7c3a1d-2b4f-4e6a-8c9d-0a1b2c3d4e5f"
HOST_CERT_PATH = HERE / "host-cert.pem"
HOST_IDENTITY_PATH = (
    HERE / "host-identity.pem"
)  # private key + certificate, as CertificateCredential reads it
VAULT_WRAPPING_KEY = "keyset-wrapping"
VAULT_APP_CERTIFICATE_KEY = "sam-app-certificate"
VAULT_APP_SECRET = "sam-app-client-secret"  # noqa: S105 - a secret's name, not a secret
KEY_VAULT_SCOPE = "https://vault.azure.net/.default"

CONTOSO = "37b8eb49-a13c-4f65-b67b-2599d29bc69b"
CONTOSO_DOMAIN = "contosopartner.onmicrosoft.com"
FABRIKAM = "61500bb0-d5d9-408a-abf0-577f83dc2d21"
ADATUM = "2a8d07af-1fef-4b88-8b48-e6f977dc47e2"  # Contoso's GDAP customer
NORTHWIND = "e4f0ee41-566d-43a6-8fdc-0ad7ed137778"  # Contoso's GDAP customer
TAILSPIN = "9dee812c-a184-47c6-831d-3136e24243da"  # Fabrikam's customer, unreachable from Contoso
# More of Contoso's GDAP customers (directory.demo.toml): each relationship status, some ending soon.
LITWARE = "abd91e28-8069-4f5d-99e0-07fbe938f8af"  # active, ends in 5 days, not auto-extended
WIDE_WORLD = "7e433cbf-1939-4f88-bf0f-b91be3ba719e"  # active, ends in 20 days, auto-extended
PROSEWARE = "559c7ada-4148-4002-97eb-15aa8266a2aa"  # expired
FOURTH_COFFEE = "b3688eb5-97a6-4188-bb09-612d50177578"  # terminated
ALPINE_SKI = "e210531f-f888-4c4a-bc1d-f3ad9213aae6"  # approvalPending
TREY_RESEARCH = "27f991af-eab4-4172-8e6c-b14948f4bddf"  # terminationRequested
# Contoso's relationships by display name (unique per partner, as Graph requires).
GDAP_ADATUM = "Adatum standard"  # active, auto-extended
GDAP_NORTHWIND = "Northwind support"  # active, ends in 24 days, not auto-extended
GDAP_LITWARE = "Litware helpdesk"
GDAP_CONTOSO_COUNT = 13  # three pages of five

ADMIN_AGENT = "adele.admin@contosopartner.onmicrosoft.com"  # AdminAgents, MFA registered
SALES_AGENT = "sam.sales@contosopartner.onmicrosoft.com"  # SalesAgents, MFA registered
NO_MFA_USER = "nick.nomfa@contosopartner.onmicrosoft.com"  # AdminAgents, no MFA method
HELPDESK_AGENT = "hank.helpdesk@contosopartner.onmicrosoft.com"  # HelpdeskAgents only: not an agent we accept
FABRIKAM_ADMIN = "fiona.admin@fabrikampartner.onmicrosoft.com"  # AdminAgents, Global Administrator
# No Partner Center role; member of a security group he created himself and named "AdminAgents".
SELF_MADE_GROUP_USER = "mallory.member@contosopartner.onmicrosoft.com"

# Woodgrove: a partner that has not granted admin consent to the demo app.
WOODGROVE = "c5a1e0d4-7b1f-4f0e-9a8e-2d6b3f4a5c71"
WOODGROVE_DOMAIN = "woodgrovepartner.onmicrosoft.com"
WOODGROVE_AGENT = "walter.agent@woodgrovepartner.onmicrosoft.com"  # AdminAgents, not a directory admin
WOODGROVE_GLOBAL_ADMIN = "gina.global@woodgrovepartner.onmicrosoft.com"  # Global Administrator, no PC role
ADMIN_CONSENT_REDIRECT_URI = "http://127.0.0.1:8000/onboarding/admin-consent/callback/"

PARTNER_CENTER_SCOPE = "https://api.partnercenter.microsoft.com/user_impersonation"
GRAPH_SCOPE = "https://graph.microsoft.com/Directory.AccessAsUser.All"
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"  # only alone (client credentials)
GDAP_READ_SCOPE = "https://graph.microsoft.com/DelegatedAdminRelationship.Read.All"
ARM_SCOPE = "https://management.azure.com/user_impersonation"
# The consent request: named scopes only (`.default` cannot be mixed with them).
CONSENT_SCOPES = [PARTNER_CENTER_SCOPE, GRAPH_SCOPE, ARM_SCOPE]

# Partner Center roles (sandbox ids; match roles by name, the real ids are not published).
PC_ROLE_ADMIN_AGENT, PC_ROLE_SALES_AGENT, PC_ROLE_HELPDESK_AGENT = (r.id for r in PARTNER_ROLES)

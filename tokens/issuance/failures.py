"""Classify identity-provider failures into who has to act.

* transient: retry later (HTTP 429/5xx, timeouts, dropped connections, Entra's "temporarily
  unavailable" codes). Never changes a grant's state.
* partner: only the partner can fix it (refresh token expired or revoked, MFA or conditional
  access now required, consent removed, or the application disabled or deleted in the partner's
  own tenant: AADSTS7000112 and 700016 name one tenant, not our credential, entra-protocol.md
  section 9). The grant moves to needs_renewal and the partner is told what to do.
* operator: the application's own credential (client secret or certificate) was refused. Every
  redemption fails alike, so one operator alert pauses the application's renewals until a probe
  succeeds; no partner's grant is touched, because no partner can fix it.
* attention: a code nobody placed, or a request our configuration built wrongly. Only that grant
  is marked needs_attention (still tried, with backoff) and staff get an alert that pauses
  nothing: one unexplained answer must not stop renewal for every partner.
* customer: a request for one customer tenant failed for a reason of that customer alone (no
  GDAP relationship, app not consented there). The caller is told; the partner's grant is fine.

Codes come from `error_codes[0]`, never from parsing the description (descriptions change
format; see reference/entra-protocol.md section 3.1). Tables: reference/anchors.md section 4 and
reference/entra-protocol.md section 3.3.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FailureClass(enum.StrEnum):
    TRANSIENT = "transient"
    PARTNER = "partner"
    OPERATOR = "operator"
    ATTENTION = "attention"
    CUSTOMER = "customer"


@dataclass(frozen=True)
class Failure:
    failure_class: FailureClass
    code: str  # "AADSTS700082", "HTTP_503", "TIMEOUT", ...
    message: str  # safe to show and store: never contains token material
    retry_after: int | None = None

    @property
    def is_transient(self) -> bool:
        return self.failure_class is FailureClass.TRANSIENT


TRANSIENT_CODES = frozenset({90033, 90006, 90024, 50033, 50087, 90090, 90055, 50196})
PARTNER_CODES = frozenset(
    {
        700082,  # refresh token inactive for 90 days
        700084,  # refresh token lifetime exceeded
        50173,  # grant revoked (sessions revoked, password reset)
        70000,  # grant invalid or scopes no longer consented
        70008,  # code or refresh token expired
        70043,  # conditional-access sign-in frequency
        50076,  # MFA required
        50078,  # presented MFA expired
        50079,  # user must register for MFA
        50074,  # strong authentication required
        53003,  # blocked by conditional access
        53000,  # device not compliant
        530003,  # managed device required
        65001,  # consent removed or missing in the partner tenant
        50055,  # password expired
        50089,  # flow token expired
        50057,  # account disabled
        50034,  # account not found
        50105,  # user not assigned to the application
        50126,  # invalid credentials
        9002313,  # the stored refresh token is malformed
        7000112,  # the application is disabled in the partner's tenant (its admin re-enables it)
        700016,  # the application's service principal is gone from the partner's tenant
        50020,  # the consenting user no longer exists in the partner's tenant
    }
)
# AADSTS90002 (tenant not found) for a partner's tenant is in no table on purpose: a deleted tenant
# and a misconfigured authority look alike, and the second must not e-mail every partner; it is
# attention (that grant, staff alerted, nothing paused).
# Only failures of the application's own credential: these, and any `invalid_client` (RFC 6749
# section 5.2: "Client authentication failed"; Entra answers it with HTTP 401, e.g. 700024 for a
# client assertion outside its validity window; entra-protocol.md section 3.2).
OPERATOR_CODES = frozenset(
    {
        7000215,  # invalid client secret
        7000222,  # client secret expired
        700027,  # client assertion signature invalid (certificate unknown)
        50012,  # certificate or assertion problem
        7000218,  # no credential sent
    }
)
# Failures of one customer tenant reached through GDAP: the partner's grant stays healthy.
CUSTOMER_CODES = frozenset({65001, 90099, 50020, 50177, 500011, 90002, 700016, 53003})

MESSAGES: Mapping[int, str] = {
    700082: "The refresh token expired after 90 days without use. The partner must consent again.",
    50173: "The partner's sign-in sessions were revoked (password reset or admin action). Consent again.",
    50076: "Multi-factor authentication is now required. The partner must consent again with MFA.",
    50078: "The MFA the consent was made with has expired. The partner must consent again with MFA.",
    50079: (
        "Multi-factor authentication is now required, and the user who consented has no MFA method "
        "registered. They must register one (https://aka.ms/mfasetup, Security info), then an admin "
        "agent must renew the consent with MFA."
    ),
    53003: "A conditional-access policy in the partner's tenant blocks this application.",
    65001: "Consent for this application was removed. The partner must consent again.",
    70043: "A conditional-access sign-in frequency policy expired the grant. Consent again.",
    7000112: (
        "The application is disabled in your tenant. A Global Administrator of your tenant must enable "
        "it again (Entra admin center, Enterprise applications, Properties, Enabled for users to sign "
        "in), then an admin agent must renew the consent."
    ),
    700016: (
        "The application was deleted from your tenant (its enterprise application is gone). An admin "
        "agent must renew the consent, which adds it again."
    ),
    50020: "The user who consented no longer exists in your tenant. Another admin agent must renew it.",
    7000215: "The application's client secret is invalid. An operator must update the credential.",
    7000222: "The application's client secret has expired. An operator must rotate the credential.",
    700027: "The application's certificate is not accepted. An operator must check the credential.",
}


def _first_code(result: Mapping[str, Any]) -> int | None:
    codes = result.get("error_codes") or []
    try:
        return int(codes[0]) if codes else None
    except (TypeError, ValueError):
        return None


def failure_from_error_response(*, result: Mapping[str, Any], for_customer: bool = False) -> Failure:
    """Classify an OAuth error dict as MSAL returns it (HTTP 4xx with a JSON body)."""
    error = str(result.get("error") or "unknown_error")
    number = _first_code(result)
    code = f"AADSTS{number}" if number is not None else error
    message = MESSAGES.get(number or 0, f"The identity provider refused the request ({code}, {error}).")
    if for_customer and number in CUSTOMER_CODES:
        return Failure(
            FailureClass.CUSTOMER,
            code,
            f"The customer tenant refused access ({code}): check the GDAP relationship and the "
            "application's consent in that tenant.",
        )
    if number in TRANSIENT_CODES or error == "temporarily_unavailable":
        return Failure(FailureClass.TRANSIENT, code, message)
    if number in OPERATOR_CODES or error == "invalid_client":
        return Failure(FailureClass.OPERATOR, code, message)
    # invalid_grant and interaction_required mean "get a new authorization code" whatever the
    # code (entra-protocol.md section 3.4, the v1 protocol document).
    if number in PARTNER_CODES or error in {"invalid_grant", "interaction_required", "consent_required"}:
        return Failure(FailureClass.PARTNER, code, message)
    # An error we cannot place (or our own configuration: invalid_scope, a code missing from the
    # tables): staff must look, but it must not pause every partner's renewal.
    return Failure(FailureClass.ATTENTION, code, message)


def failure_from_http_status(*, status: int, retry_after: int | None) -> Failure:
    return Failure(
        FailureClass.TRANSIENT,
        f"HTTP_{status}",
        f"The identity provider answered HTTP {status}; the request will be retried.",
        retry_after=retry_after,
    )


def failure_from_invalid_answer(*, what: str) -> Failure:
    """An answer that is not what the protocol defines (not JSON, a discovery document without
    endpoints): no AADSTS code to classify, and most likely a fault in between (a proxy's error
    page); retried like an HTTP 5xx."""
    return Failure(
        FailureClass.TRANSIENT,
        "INVALID_ANSWER",
        f"The identity provider's answer could not be used ({what}); the request will be retried.",
    )


def failure_from_unexpected_msal_error(*, error: Exception) -> Failure:
    return Failure(
        FailureClass.TRANSIENT,
        "MSAL_ERROR",
        f"MSAL could not complete the request ({type(error).__name__}); the request will be retried.",
    )


def failure_from_network_error(*, timed_out: bool) -> Failure:
    if timed_out:
        return Failure(FailureClass.TRANSIENT, "TIMEOUT", "The identity provider did not answer in time.")
    return Failure(FailureClass.TRANSIENT, "CONNECTION", "The identity provider could not be reached.")


def failure_from_key_vault(*, refused: bool, message: str) -> Failure:
    """Key Vault failed to give the application's credential (read its secret, sign its assertion).
    The application's problem, never a partner's: operator class, so the vault raises one alert and
    touches no grant, whether Key Vault refused (a role removed) or is down. `message` names the
    operation and object, never a value (tokens/credentials/keyvault.py)."""
    return Failure(
        FailureClass.OPERATOR,
        "KEY_VAULT_REFUSED" if refused else "KEY_VAULT_UNAVAILABLE",
        f"The application's credential could not be used: {message}",
    )

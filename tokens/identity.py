"""The one door to the identity provider: MSAL, configured for a server that holds many partners.

* One MSAL ConfidentialClientApplication per (application credential, tenant), built once and
  reused (building one costs a discovery request). Refresh tokens are redeemed at the tenant
  they are for: the partner's own tenant id, or the customer's (GDAP), whatever authority tenant
  the application is configured with (docs/architecture.md, "Redemption authority").
* They share one HTTP client per process (keep-alive pool): a requests.Session with trust_env=False, an explicit CA bundle and a timeout
  on every call. HTTP 429 and 5xx become `IdentityProviderHttpError` (carrying Retry-After) before
  MSAL sees them: MSAL would otherwise turn the plain-text 429 body into a JSONDecodeError and lose
  the Retry-After header.
* MSAL's answers are checked before MSAL parses them (`MsalHttpClient`): an unknown tenant at
  discovery (HTTP 400, `invalid_tenant`, 90002) becomes `UnknownTenant`, any other answer MSAL
  cannot use (not JSON, a discovery document without endpoints) `IdentityProviderAnswerInvalid`.
  MSAL itself reports all of these as the same bare ValueError, or as KeyError or TypeError.
* MSAL's HTTP throttling cache is disabled (`_NeverStore`): it replays a 400 for 60 s and a 5xx for
  5 s without asking the provider (reference/entra-protocol.md 7.6), which would hide a recovery
  and repeat one failure as several. Our own renewal engine does the backing off.
* MSAL's token cache is disabled (`_DiscardingTokenCache`): the vault (encrypted refresh tokens)
  and the broker's encrypted access-token cache are the only places tokens live. A shared MSAL
  cache would pile every partner's tokens into process memory in plaintext.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msal
import requests
from django.conf import settings
from django.utils import timezone

from tokens.assertions import KeyVaultAssertion
from tokens.failures import (
    Failure,
    failure_from_error_response,
    failure_from_http_status,
    failure_from_invalid_answer,
    failure_from_key_vault,
    failure_from_network_error,
    failure_from_unexpected_msal_error,
)
from tokens.keyvault import KeyVaultError, KeyVaultRefused, secret_get
from tokens.models import Application, ApplicationCredential

logger = logging.getLogger(__name__)


class IdentityProviderHttpError(Exception):
    """HTTP 429 or 5xx from the identity provider."""

    def __init__(self, status: int, retry_after: int | None) -> None:
        super().__init__(f"identity provider answered HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class UnknownTenant(Exception):
    """Discovery answered that the tenant does not exist (HTTP 400, AADSTS90002)."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("the identity provider does not know this tenant")
        self.result = result


class IdentityProviderAnswerInvalid(Exception):
    """An answer MSAL cannot use. The message names what was wrong, never the answer's content."""


class NoUsableCredential(Exception):
    """The application has no credential valid now."""


class _NeverStore(dict[Any, Any]):
    def __setitem__(self, key: Any, value: Any) -> None:
        return None


class _DiscardingTokenCache(msal.TokenCache):
    def add(self, event: dict[str, Any], **kwargs: Any) -> None:
        return None


def _retry_after(response: requests.Response) -> int | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0, int(value)) if value is not None else None
    except ValueError:
        return None


class IdentityHttpClient:
    """The http_client MSAL calls: bounded in time, isolated from proxy environment variables."""

    def __init__(self, *, ca_bundle: str | bool, timeout: float, pool_size: int = 10) -> None:
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self._session.mount("https://", adapter)
        self._session.trust_env = False
        self._session.verify = ca_bundle
        self._timeout = timeout

    def _checked(self, response: requests.Response) -> requests.Response:
        if response.status_code == 429 or response.status_code >= 500:
            raise IdentityProviderHttpError(response.status_code, _retry_after(response))
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._checked(self._session.get(url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return self._checked(self._session.post(url, **kwargs))

    def close(self) -> None:
        self._session.close()


DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class MsalHttpClient(IdentityHttpClient):
    """The http_client MSAL objects get: also refuses, before MSAL parses them, the answers MSAL
    would turn into an unclassifiable exception (see the module docstring)."""

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        response = super().get(url, **kwargs)
        if not url.split("?", 1)[0].endswith(DISCOVERY_SUFFIX):
            return response
        body = _json_object(response)
        if (
            response.status_code == 400
            and body is not None
            and (body.get("error") == "invalid_tenant" or 90002 in (body.get("error_codes") or []))
        ):
            raise UnknownTenant(body)
        if response.status_code != 200:
            raise IdentityProviderAnswerInvalid(f"discovery answered HTTP {response.status_code}")
        if body is None or not all(
            isinstance(body.get(name), str) for name in ("authorization_endpoint", "token_endpoint")
        ):
            raise IdentityProviderAnswerInvalid("the discovery document has no usable endpoints")
        return response

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        response = super().post(url, **kwargs)
        if _json_object(response) is None:
            raise IdentityProviderAnswerInvalid(
                f"the token endpoint answered HTTP {response.status_code} without a JSON object"
            )
        return response


def identity_http_client() -> IdentityHttpClient:
    return IdentityHttpClient(ca_bundle=settings.IDENTITY_CA_BUNDLE, timeout=settings.IDENTITY_HTTP_TIMEOUT)


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_at: datetime
    refresh_token: str | None
    scope: str
    id_token: str | None
    client_info: str | None


def credential_current_id(*, application: Application) -> uuid.UUID:
    """The id of the newest credential valid now (older valid ones stay usable elsewhere until
    they lapse). Only the id is read: the secret is decrypted when an MSAL object is built for it,
    once per process, credential and tenant, not on every redemption."""
    now = timezone.now()
    found = list(
        ApplicationCredential.objects.filter(
            application=application, disabled_at=None, not_before__lte=now, expires_at__gt=now
        )
        .order_by("-not_before")
        .values_list("pk", flat=True)[:1]
    )
    if not found:
        raise NoUsableCredential(f"application {application.client_id} has no valid credential")
    return found[0]


def _client_credential(
    credential: ApplicationCredential, *, client_id: str, token_endpoint: str
) -> str | dict[str, Any]:
    """A certificate goes to MSAL with its public certificate and no thumbprint: MSAL then signs
    PS256 with the SHA-256 `x5t#S256`, the form Entra asks for; given a (SHA-1) thumbprint it
    signs the RS256 + `x5t` form, deprecated in MSAL's docstring (entra-protocol.md section 10).
    A Key Vault secret is read from Key Vault; a Key Vault certificate goes to MSAL as a callable
    client assertion that Key Vault signs (tokens/assertions.py). Both raise KeyVaultError."""
    kind = credential.kind
    if kind == ApplicationCredential.Kind.SECRET:
        return credential.secret
    if kind == ApplicationCredential.Kind.KEY_VAULT_SECRET:
        return secret_get(secret_id=credential.key_vault_id)
    if kind == ApplicationCredential.Kind.KEY_VAULT_CERTIFICATE:
        assertion = KeyVaultAssertion(
            client_id=client_id,
            token_endpoint=token_endpoint,
            key_id=credential.key_vault_id,
            certificate_pem=credential.certificate_pem,
        )
        return {"client_assertion": assertion}
    return {"private_key": credential.secret, "public_certificate": credential.certificate_pem}


_APPS_MAX = 512
_apps: OrderedDict[tuple[str, str, str], msal.ConfidentialClientApplication] = OrderedDict()
_apps_lock = threading.Lock()
_shared_http: MsalHttpClient | None = None
# Keep-alive connections shared by every MSAL object of the process (one per thread at most): with
# thousands of partner tenants each tenant's MSAL object is new, and a session of its own would
# cost a TLS handshake per redemption.
_SHARED_POOL_SIZE = 64


def _shared_http_client() -> MsalHttpClient:
    global _shared_http
    with _apps_lock:
        if _shared_http is None:
            _shared_http = MsalHttpClient(
                ca_bundle=settings.IDENTITY_CA_BUNDLE,
                timeout=settings.IDENTITY_HTTP_TIMEOUT,
                pool_size=_SHARED_POOL_SIZE,
            )
        return _shared_http


def msal_app_get(*, application: Application, tenant: str) -> msal.ConfidentialClientApplication:
    """The reused MSAL application for this application's current credential and one tenant."""
    credential_id = credential_current_id(application=application)
    key = (str(application.pk), str(credential_id), tenant)
    with _apps_lock:
        app = _apps.get(key)
        if app is not None:
            _apps.move_to_end(key)
            return app
    credential = ApplicationCredential.objects.filter(pk=credential_id).first()
    if credential is None:  # deleted since its id was read
        raise NoUsableCredential(f"application {application.client_id} has no valid credential")
    authority = f"{application.authority_host.rstrip('/')}/{tenant}"
    app = msal.ConfidentialClientApplication(
        application.client_id,
        client_credential=_client_credential(
            credential, client_id=application.client_id, token_endpoint=f"{authority}/oauth2/v2.0/token"
        ),
        authority=authority,
        http_client=_shared_http_client(),
        http_cache=_NeverStore(),
        token_cache=_DiscardingTokenCache(),
        instance_discovery=False,
        azure_region=False,
    )
    with _apps_lock:
        _apps[key] = app
        while len(_apps) > _APPS_MAX:
            _apps.popitem(last=False)
    return app


def msal_apps_clear() -> None:
    """Forget every MSAL object and the shared connections (after a credential rotation, and
    between tests that change the authority's settings)."""
    global _shared_http
    with _apps_lock:
        _apps.clear()
        if _shared_http is not None:
            _shared_http.close()
            _shared_http = None


def _issued(result: dict[str, Any]) -> IssuedTokens:
    expires_in = int(result.get("expires_in") or 0)
    return IssuedTokens(
        access_token=result["access_token"],
        expires_at=timezone.now() + timedelta(seconds=expires_in),
        refresh_token=result.get("refresh_token"),
        scope=str(result.get("scope", "")),
        id_token=result.get("id_token"),
        client_info=result.get("client_info"),
    )


def identity_call(
    operation: Callable[[], dict[str, Any]], *, for_customer: bool = False
) -> IssuedTokens | Failure:
    """Run one MSAL operation (building the MSAL object included) and turn every outcome into
    tokens or a classified failure. Nothing here raises for a provider-side problem."""
    try:
        result = operation()
    except NoUsableCredential:
        return failure_from_error_response(result={"error": "invalid_client", "error_codes": [7000222]})
    except KeyVaultError as error:
        return failure_from_key_vault(refused=isinstance(error, KeyVaultRefused), message=str(error))
    except IdentityProviderHttpError as error:
        return failure_from_http_status(status=error.status, retry_after=error.retry_after)
    except requests.Timeout:
        return failure_from_network_error(timed_out=True)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        return failure_from_network_error(timed_out=False)
    except UnknownTenant as error:
        return failure_from_error_response(result=error.result, for_customer=for_customer)
    except IdentityProviderAnswerInvalid as error:
        return failure_from_invalid_answer(what=str(error))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # Anything else MSAL raises (its client-side checks, answers our client let through):
        # nothing says the tenant, the grant or the application is wrong. Logged by type only:
        # MSAL's messages can quote answers.
        logger.warning("MSAL raised %s", type(error).__name__)
        return failure_from_unexpected_msal_error(error=error)
    if "access_token" in result:
        return _issued(result)
    return failure_from_error_response(result=result, for_customer=for_customer)


def refresh_token_redeem(
    *, application: Application, refresh_token: str, audience: str, tenant: str, for_customer: bool = False
) -> IssuedTokens | Failure:
    """Redeem the partner's refresh token for one audience in one tenant (partner or customer)."""
    return identity_call(
        lambda: msal_app_get(application=application, tenant=tenant).acquire_token_by_refresh_token(
            refresh_token, scopes=application.scopes_for(audience)
        ),
        for_customer=for_customer,
    )

"""The one door to the identity provider: MSAL, configured for a server that holds many partners.

* One MSAL ConfidentialClientApplication per (application credential, tenant), built once and
  reused (building one costs a discovery request). With the application's authority tenant
  `organizations` (the default) one object serves every partner; customer tenants (GDAP), and
  partners of an application configured with a specific tenant, get objects of their own
  (`broker.redemption_tenant`; docs/architecture.md, "Redemption authority").
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from msal.application import extract_certs
from msal.oauth2cli.assertion import JwtAssertionCreator

from tokens.credentials.expiry import credential_refused_record
from tokens.credentials.keyvault import KeyVaultError, KeyVaultRefused, secret_get
from tokens.issuance.assertions import KeyVaultAssertion
from tokens.issuance.failures import (
    Failure,
    FailureClass,
    failure_from_error_response,
    failure_from_http_status,
    failure_from_invalid_answer,
    failure_from_key_vault,
    failure_from_network_error,
    failure_from_unexpected_msal_error,
)
from tokens.models import Application, ApplicationCredential

logger = logging.getLogger(__name__)


class IdentityProviderHttpError(Exception):
    """HTTP 429 or 5xx from the identity provider."""

    def __init__(self, status: int, retry_after: int | None) -> None:
        super().__init__(f"identity provider answered HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class UnknownTenant(ValueError):
    """Discovery answered that the tenant does not exist (HTTP 400, AADSTS90002). A ValueError,
    as MSAL's own for the same answer, so that code building an MSAL object outside
    `identity_call` (the start of a sign-in) still catches it. MSAL re-raises a ValueError from
    discovery as one of its own, this one as its context (`_raised_by_client`)."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("the identity provider does not know this tenant")
        self.result = result


class IdentityProviderAnswerInvalid(ValueError):
    """An answer MSAL cannot use. The message names what was wrong, never the answer's content.
    A ValueError for the same reason as UnknownTenant."""


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
    # repr=False: the token material never appears in a repr (error pages, logs of locals).
    access_token: str = field(repr=False)
    expires_at: datetime
    refresh_token: str | None = field(repr=False)
    scope: str
    id_token: str | None = field(repr=False)
    client_info: str | None = field(repr=False)


def credentials_usable_ids(*, application: Application) -> list[uuid.UUID]:
    """The ids of the credentials valid now, in the order a redemption tries them: the newest
    added first (a certificate added after a secret wins, whatever its `not_before`, which is
    only its validity start), and credentials Entra refused while another worked last. Only ids
    are read: a secret is decrypted when an MSAL object is built for it, once per process,
    credential and tenant, not on every redemption."""
    now = timezone.now()
    found = list(
        ApplicationCredential.objects.filter(
            application=application, disabled_at=None, not_before__lte=now, expires_at__gt=now
        )
        .order_by(F("refused_at").asc(nulls_first=True), "-created_at", "pk")
        .values_list("pk", flat=True)
    )
    if not found:
        raise NoUsableCredential(f"application {application.client_id} has no valid credential")
    return found


def credential_current_id(*, application: Application) -> uuid.UUID:
    """The credential a redemption tries first (see credentials_usable_ids)."""
    return credentials_usable_ids(application=application)[0]


def _client_credential(
    credential: ApplicationCredential, *, client_id: str, token_endpoint: str
) -> str | dict[str, Any]:
    """A secret as it is; a Key Vault secret read from Key Vault; a Key Vault certificate as a
    callable client assertion that Key Vault signs (tokens/issuance/assertions.py; both raise KeyVaultError);
    a certificate as a callable that signs a new assertion for every request."""
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
    return {"client_assertion": _certificate_assertion(credential)}


def _certificate_assertion(credential: ApplicationCredential) -> Callable[[dict[str, str]], str]:
    """PS256 with `x5t#S256` and `x5c` headers, the form Entra asks for (entra-protocol.md section
    10), signed anew for every request. Given the certificate itself, MSAL would reuse one assertion,
    same `jti`, for nine minutes (`create_regenerative_assertion`), and an authorization server that
    keeps assertions single-use, as RFC 7523 section 3 allows and the sandbox does, refuses every
    request after the first (AADSTS50013): with one MSAL object serving every partner, that stopped
    a certificate after one redemption."""
    certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
    creator = JwtAssertionCreator(
        credential.secret,
        algorithm="PS256",
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex(),
        headers={"x5c": extract_certs(credential.certificate_pem)},
    )

    def assertion(context: dict[str, str]) -> str:
        signed: str | bytes = creator.create_normal_assertion(
            audience=context["token_endpoint"], issuer=context["client_id"]
        )
        return signed.decode() if isinstance(signed, bytes) else signed

    return assertion


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


def msal_app_get(
    *, application: Application, tenant: str, credential_id: uuid.UUID | None = None
) -> msal.ConfidentialClientApplication:
    """The reused MSAL application for one credential (by default the current one) and one tenant."""
    if credential_id is None:
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


def _raised_by_client(error: BaseException) -> ValueError | None:
    """The UnknownTenant or IdentityProviderAnswerInvalid behind an exception MSAL raised."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, UnknownTenant | IdentityProviderAnswerInvalid):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


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
    except ValueError as error:
        found = _raised_by_client(error)
        if isinstance(found, UnknownTenant):
            return failure_from_error_response(result=found.result, for_customer=for_customer)
        if isinstance(found, IdentityProviderAnswerInvalid):
            return failure_from_invalid_answer(what=str(found))
        logger.warning("MSAL raised %s", type(error).__name__)
        return failure_from_unexpected_msal_error(error=error)
    except (KeyError, TypeError, AttributeError) as error:
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
    """Redeem the partner's refresh token for one audience in one tenant (partner or customer).

    When Entra refuses the application's credential, the next valid credential is tried in the
    same redemption (rotation: a new credential Entra does not know yet, or an old one it has
    removed, must not stop the service while another one works); a refused credential that
    another one replaced is flagged for staff. Only when every credential is refused does the
    caller see the operator failure."""
    try:
        credential_ids = credentials_usable_ids(application=application)
    except NoUsableCredential:
        return identity_call(_no_usable_credential)
    refused: list[tuple[uuid.UUID, Failure]] = []
    outcome: IssuedTokens | Failure | None = None
    for credential_id in credential_ids:
        outcome = identity_call(
            partial(_redeem, application, credential_id, tenant, refresh_token, audience),
            for_customer=for_customer,
        )
        if not (isinstance(outcome, Failure) and outcome.failure_class is FailureClass.OPERATOR):
            break
        refused.append((credential_id, outcome))
    assert outcome is not None
    if refused and not (isinstance(outcome, Failure) and outcome.failure_class is FailureClass.OPERATOR):
        for credential_id, failure in refused:
            credential_refused_record(application=application, credential_id=credential_id, failure=failure)
    return outcome


def _no_usable_credential() -> dict[str, Any]:
    raise NoUsableCredential


def _redeem(
    application: Application, credential_id: uuid.UUID, tenant: str, refresh_token: str, audience: str
) -> dict[str, Any]:
    app = msal_app_get(application=application, tenant=tenant, credential_id=credential_id)
    result: dict[str, Any] = app.acquire_token_by_refresh_token(
        refresh_token, scopes=application.scopes_for(audience)
    )
    return result

"""What MSAL raises becomes a classified failure: only a tenant the provider says it does not
know is AADSTS90002; every other unexpected answer or MSAL error is transient, with a code of
its own (never an AADSTS code the provider did not send)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from django.test import override_settings

from sandbox import demo
from tests.fixtures.misbehaving_https import Answer, MisbehavingServer
from tests.fixtures.panel import AUDIENCES
from tokens.credentials.applications import ApplicationSpec, application_upsert, credential_secret_add
from tokens.issuance.failures import Failure, FailureClass
from tokens.issuance.identity import (
    IdentityProviderAnswerInvalid,
    UnknownTenant,
    identity_call,
    msal_app_get,
    msal_apps_clear,
    refresh_token_redeem,
)
from tokens.models import Application

pytestmark = pytest.mark.django_db

UNKNOWN_TENANT = "0badc0de-0000-4000-8000-000000000000"


def _redeem(application: Application, tenant: str, *, for_customer: bool = False) -> Failure:
    outcome = refresh_token_redeem(
        application=application,
        refresh_token="a-refresh-token",
        audience="graph",
        tenant=tenant,
        for_customer=for_customer,
    )
    assert isinstance(outcome, Failure)
    return outcome


def test_a_tenant_the_sandbox_does_not_know_is_aadsts90002(application: Application) -> None:
    failure = _redeem(application, UNKNOWN_TENANT)
    # Staff look at it (needs_attention, an alert); nothing is paused and no partner is e-mailed.
    assert (failure.failure_class, failure.code) == (FailureClass.ATTENTION, "AADSTS90002")
    customer = _redeem(application, UNKNOWN_TENANT, for_customer=True)
    assert (customer.failure_class, customer.code) == (FailureClass.CUSTOMER, "AADSTS90002")


def test_a_tenant_the_sandbox_does_know_reaches_the_token_endpoint(application: Application) -> None:
    """The counterpart: with a known tenant the same garbage refresh token is refused there."""
    failure = _redeem(application, demo.CONTOSO)
    assert failure.code != "AADSTS90002" and failure.code.startswith("AADSTS")


def test_msal_raising_its_own_valueerror_is_transient_with_its_own_code(application: Application) -> None:
    app = msal_app_get(application=application, tenant=demo.CONTOSO)
    flow = app.initiate_auth_code_flow([demo.GRAPH_SCOPE], redirect_uri=demo.REDIRECT_URI)
    # A state that is not the flow's: MSAL raises ValueError before sending anything.
    outcome = identity_call(lambda: app.acquire_token_by_auth_code_flow(flow, {"state": "x", "code": "y"}))
    assert outcome == Failure(
        FailureClass.TRANSIENT,
        "MSAL_ERROR",
        "MSAL could not complete the request (ValueError); the request will be retried.",
    )


# --- answers Entra would never give, from a server standing in for it ----------------------------


@pytest.fixture
def odd_authority(misbehaving_https: MisbehavingServer) -> Iterator[tuple[MisbehavingServer, Application]]:
    with override_settings(IDENTITY_CA_BUNDLE=str(misbehaving_https.ca_bundle)):
        msal_apps_clear()
        application = application_upsert(
            spec=ApplicationSpec(
                name="odd",
                client_id=str(uuid.uuid4()),
                authority_host=misbehaving_https.base_url,
                redirect_uri=demo.REDIRECT_URI,
                audiences=AUDIENCES,
            )
        )
        credential_secret_add(application=application, secret="a-secret")  # noqa: S106
        yield misbehaving_https, application
        msal_apps_clear()


def _discovery_of(server: MisbehavingServer, tenant: str) -> dict[str, str]:
    return {
        "issuer": f"{server.base_url}/{tenant}/v2.0",
        "authorization_endpoint": f"{server.base_url}/{tenant}/oauth2/v2.0/authorize",
        "token_endpoint": f"{server.base_url}/{tenant}/oauth2/v2.0/token",
    }


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (Answer(404, '{"error": "not_found"}'), "discovery answered HTTP 404"),
        (Answer(403, "<html>Forbidden by proxy</html>", "text/html"), "discovery answered HTTP 403"),
        (Answer(400, '{"error": "invalid_request"}'), "discovery answered HTTP 400"),
        (
            Answer(200, "<html>captive portal</html>", "text/html"),
            "the discovery document has no usable endpoints",
        ),
        (Answer(200, "[]"), "the discovery document has no usable endpoints"),
        (Answer(200, '{"authorization_endpoint": "x"}'), "the discovery document has no usable endpoints"),
        (
            Answer(200, '{"authorization_endpoint": "x", "token_endpoint": 5}'),
            "the discovery document has no usable endpoints",
        ),
    ],
)
def test_a_discovery_answer_other_than_unknown_tenant_is_transient_not_90002(
    odd_authority: tuple[MisbehavingServer, Application], answer: Answer, what: str
) -> None:
    server, application = odd_authority
    server.answers[f"/{demo.CONTOSO}/v2.0/.well-known/openid-configuration"] = answer
    failure = _redeem(application, demo.CONTOSO)
    assert failure == Failure(
        FailureClass.TRANSIENT,
        "INVALID_ANSWER",
        f"The identity provider's answer could not be used ({what}); the request will be retried.",
    )


def test_an_unknown_tenant_answer_from_any_authority_is_90002(
    odd_authority: tuple[MisbehavingServer, Application],
) -> None:
    server, application = odd_authority
    server.answers[f"/{demo.CONTOSO}/v2.0/.well-known/openid-configuration"] = Answer(
        400,
        json.dumps(
            {"error": "invalid_tenant", "error_codes": [90002], "error_description": "AADSTS90002: x"}
        ),
    )
    assert _redeem(application, demo.CONTOSO).code == "AADSTS90002"


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, "<html>ok</html>", "text/html"),
        Answer(400, "Bad Request", "text/plain"),
        Answer(200, '"token"'),
    ],
)
def test_a_token_endpoint_answer_that_is_not_a_json_object_is_transient(
    odd_authority: tuple[MisbehavingServer, Application], answer: Answer
) -> None:
    server, application = odd_authority
    server.answers[f"/{demo.CONTOSO}/v2.0/.well-known/openid-configuration"] = Answer(
        200, json.dumps(_discovery_of(server, demo.CONTOSO))
    )
    server.answers[f"/{demo.CONTOSO}/oauth2/v2.0/token"] = answer
    failure = _redeem(application, demo.CONTOSO)
    assert (failure.failure_class, failure.code) == (FailureClass.TRANSIENT, "INVALID_ANSWER")
    assert f"/{demo.CONTOSO}/oauth2/v2.0/token" in server.requested


def test_building_an_msal_object_outside_identity_call_raises_a_valueerror_as_msal_did(
    odd_authority: tuple[MisbehavingServer, Application],
) -> None:
    """The start of a sign-in builds its MSAL object directly and catches ValueError, which is what
    MSAL raises for these answers; the client's own exception is its context."""
    server, application = odd_authority
    discovery = f"/{demo.CONTOSO}/v2.0/.well-known/openid-configuration"
    server.answers[discovery] = Answer(200, "<html/>", "text/html")
    with pytest.raises(ValueError) as raised:
        msal_app_get(application=application, tenant=demo.CONTOSO)
    assert isinstance(raised.value.__context__, IdentityProviderAnswerInvalid)
    server.answers[discovery] = Answer(400, json.dumps({"error": "invalid_tenant", "error_codes": [90002]}))
    with pytest.raises(ValueError) as raised:
        msal_app_get(application=application, tenant=demo.CONTOSO)
    assert isinstance(raised.value.__context__, UnknownTenant)

"""Partner refresh tokens are redeemed at the partner's own tenant, whatever authority tenant the
application is configured with (docs/architecture.md, "Redemption authority"); customer
redemptions stay at the customer's tenant."""

from __future__ import annotations

import jwt
import pytest
from django.test import Client

from sandbox import demo
from tests.fixtures.panel import consent_run
from tokens.audit import Actor
from tokens.issuance.broker import access_token_get
from tokens.issuance.identity import IssuedTokens, msal_apps_clear, refresh_token_redeem
from tokens.models import ConsentGrant
from tokens.renewal.sweep import Outcome, grant_renew

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "authority_tenant", ["organizations", "common", demo.CONTOSO, demo.FABRIKAM, demo.ADATUM]
)
def test_a_partner_grant_is_redeemed_at_the_partner_tenant_whatever_the_authority_tenant(
    consented_grant: ConsentGrant, panel_settings, service_actor: Actor, authority_tenant: str
) -> None:
    application = consented_grant.application
    application.authority_tenant = authority_tenant
    application.save(update_fields=["authority_tenant"])
    msal_apps_clear()

    token = access_token_get(
        partner=consented_grant.partner, audience="graph", purpose="list users", actor=service_actor
    )
    assert jwt.decode(token.token, options={"verify_signature": False})["tid"] == demo.CONTOSO
    renewal = grant_renew(grant_id=str(consented_grant.pk), force=True)
    assert renewal.outcome == Outcome.RENEWED, renewal


def test_a_partner_token_redeemed_at_another_partner_tenant_is_refused(consented_grant: ConsentGrant) -> None:
    """What the old behaviour (the application's authority tenant) did with a specific tenant there."""
    outcome = refresh_token_redeem(
        application=consented_grant.application,
        refresh_token=consented_grant.refresh_token,
        audience="graph",
        tenant=demo.FABRIKAM,
    )
    assert not isinstance(outcome, IssuedTokens)


def test_a_customer_redemption_stays_at_the_customer_tenant(
    consented_grant: ConsentGrant, panel_settings, service_actor: Actor
) -> None:
    application = consented_grant.application
    application.authority_tenant = demo.FABRIKAM
    application.save(update_fields=["authority_tenant"])
    msal_apps_clear()
    token = access_token_get(
        partner=consented_grant.partner,
        audience="graph",
        purpose="list customer users",
        actor=service_actor,
        customer_tenant=demo.ADATUM,
    )
    assert jwt.decode(token.token, options={"verify_signature": False})["tid"] == demo.ADATUM


@pytest.mark.parametrize(("authority_tenant", "discoveries"), [("organizations", 1), (demo.FABRIKAM, 2)])
def test_with_organizations_one_msal_object_serves_every_partner(
    consented_grant: ConsentGrant, panel_settings, authority_tenant: str, discoveries: int
) -> None:
    """The reason for redeeming at `organizations` when configured so: one discovery request for
    all partners, where a specific authority tenant needs one per partner tenant."""
    run = consent_run(Client(), panel_settings, upn=demo.FABRIKAM_ADMIN)
    assert run.page.status_code == 200 and run.confirmation is None
    application = consented_grant.application
    application.authority_tenant = authority_tenant
    application.save(update_fields=["authority_tenant"])
    msal_apps_clear()
    panel_settings.control.clear_counters()
    for grant in ConsentGrant.objects.all():
        assert grant_renew(grant_id=str(grant.pk), force=True).outcome == Outcome.RENEWED
    assert ConsentGrant.objects.count() == 2
    assert panel_settings.control.counters()["requests_by_endpoint"]["discovery"] == discoveries

"""Names from Entra are longer than our columns allow (displayName up to 256 characters): a
consent stores them cut to the column instead of failing in the database."""

from __future__ import annotations

import uuid

import pytest

from partners.models import Partner
from tokens.audit import Actor
from tokens.credentials.applications import ApplicationSpec, application_upsert
from tokens.issuance.vault import ConsentRecord, grant_record_consent
from tokens.models import ConsentGrant


@pytest.mark.django_db
def test_a_240_character_tenant_name_and_a_long_upn_are_stored_cut_to_their_columns() -> None:
    application = application_upsert(
        spec=ApplicationSpec(
            name="SAM",
            client_id=str(uuid.uuid4()),
            authority_host="https://login.microsoftonline.com",
            redirect_uri="https://panel.example.com/onboarding/callback/",
            audiences={"partner_center": ["https://api.partnercenter.microsoft.com/user_impersonation"]},
        )
    )
    tenant_name = "Contoso " + "N" * 232
    upn = "a" * 250 + "@contoso.example"
    domain = "d" * 260 + ".onmicrosoft.com"
    assert len(tenant_name) == 240
    grant = grant_record_consent(
        application=application,
        consent=ConsentRecord(
            tenant_id=str(uuid.uuid4()),
            tenant_name=tenant_name,
            tenant_domain=domain,
            consented_by_oid=str(uuid.uuid4()),
            consented_by_upn=upn,
            consented_by_role=ConsentGrant.Role.ADMIN_AGENT,
            mfa=True,
            audiences=["partner_center"],
            refresh_token="a-refresh-token",
        ),
        actor=Actor.system("test"),
    )
    partner = Partner.objects.get()
    assert partner.display_name == tenant_name[:200]
    assert partner.domain == domain[:253]
    stored = ConsentGrant.objects.get(pk=grant.pk)
    assert stored.consented_by_upn == upn[:254]
    assert stored.state == ConsentGrant.State.ACTIVE

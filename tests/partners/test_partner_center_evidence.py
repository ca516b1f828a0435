"""What the panel accepts as MFA evidence in a Partner Center access token, claim by claim. The
end-to-end paths (real tokens from the sandbox, Partner Center's own answer) are in
test_signin_evidence.py; these cover the shapes the sandbox never produces."""

from __future__ import annotations

import jwt
import pytest

from partners.partner_center import PARTNER_CENTER_APP_ID, PARTNER_CENTER_RESOURCE, token_evidence_read

TENANT = "37b8eb49-a13c-4f65-b67b-2599d29bc69b"
OID = "c88b68ce-d2bf-4333-b44b-9fb78ab71490"


def _token(**overrides) -> str:
    claims = {
        "ver": "1.0",
        "aud": PARTNER_CENTER_RESOURCE,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "tid": TENANT,
        "oid": OID,
        "amr": ["pwd", "mfa"],
        "scp": "user_impersonation",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, "not-checked-here-partner-center-checks-it", algorithm="HS256")


def test_a_v1_partner_center_token_with_mfa_is_evidence() -> None:
    evidence = token_evidence_read(access_token=_token())
    assert evidence is not None
    assert (evidence.tenant_id, evidence.object_id, evidence.mfa) == (TENANT, OID, True)


@pytest.mark.parametrize("aud", [PARTNER_CENTER_APP_ID, f"{PARTNER_CENTER_RESOURCE}/"])
def test_partner_center_may_be_named_by_app_id_or_uri(aud: str) -> None:
    assert token_evidence_read(access_token=_token(aud=aud)) is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {"ver": "2.0"},
        {"ver": None},
        {"aud": "https://graph.microsoft.com"},
        {"aud": "00000003-0000-0000-c000-000000000000"},
    ],
)
def test_anything_but_a_v1_partner_center_token_is_no_evidence(overrides) -> None:
    assert token_evidence_read(access_token=_token(**overrides)) is None


@pytest.mark.parametrize("amr", [["pwd"], None, "mfa", ["rsa"], []])
def test_mfa_only_from_an_amr_list_holding_mfa(amr) -> None:
    evidence = token_evidence_read(access_token=_token(amr=amr))
    assert evidence is not None and evidence.mfa is False


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.e30"])
def test_a_token_that_is_not_a_jwt_is_no_evidence(garbage: str) -> None:
    assert token_evidence_read(access_token=garbage) is None

"""Access-token issuance against the sandbox: cache, refusals, failure classes, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from partners.models import Partner
from sandbox import demo
from tokens.audit import Actor
from tokens.issuance import broker
from tokens.issuance.broker import (
    AccessToken,
    AudienceNotConsented,
    CustomerAccessRefused,
    GrantNeedsRenewal,
    GrantRevoked,
    IdentityProviderUnavailable,
    InvalidRequest,
    IssuanceSuspended,
    access_token_get,
)
from tokens.issuance.identity import NoUsableCredential, credential_current_id
from tokens.issuance.killswitch import kill_switch_set
from tokens.issuance.vault import grant_revoke
from tokens.models import ApplicationCredential, AuditEvent, CachedAccessToken, ConsentGrant, OperatorAlert

pytestmark = pytest.mark.django_db


def _get(grant: ConsentGrant, actor: Actor, audience: str = "partner_center", **kwargs) -> AccessToken:
    return access_token_get(
        partner=grant.partner,
        audience=audience,
        purpose=kwargs.pop("purpose", "list customers"),
        actor=actor,
        **kwargs,
    )


def _refreshes(sandbox) -> int:
    return sandbox.control.counters()["token_requests"]["by_grant_type"].get("refresh_token", 0)


def _pc_get(sandbox, token: str):
    return sandbox.http().get(
        f"{sandbox.base_url}/v1/customers", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def test_end_to_end_partner_center_and_graph_tokens_each_for_its_own_audience(
    consented_grant, panel_settings, service_actor
) -> None:
    pc = _get(consented_grant, service_actor, "partner_center")
    graph = _get(consented_grant, service_actor, "graph")
    assert pc.token != graph.token
    assert pc.expires_at > timezone.now() + timedelta(minutes=55)
    # The Partner Center stub accepts its own audience and refuses a Graph token.
    assert _pc_get(panel_settings, pc.token).status_code == 200
    assert _pc_get(panel_settings, graph.token).status_code == 401


def test_customer_tenant_token_through_gdap(consented_grant, panel_settings, service_actor) -> None:
    token = _get(consented_grant, service_actor, "graph", customer_tenant=demo.ADATUM)
    organization = panel_settings.http().get(
        f"{panel_settings.base_url}/v1.0/organization",
        headers={"Authorization": f"Bearer {token.token}"},
        timeout=5,
    )
    assert organization.status_code == 200
    assert organization.json()["value"][0]["id"] == demo.ADATUM
    assert token.customer_tenant_id == demo.ADATUM


def test_a_customer_without_gdap_is_refused_and_the_partner_grant_stays_active(
    consented_grant, service_actor
) -> None:
    with pytest.raises(CustomerAccessRefused):
        _get(consented_grant, service_actor, "graph", customer_tenant=demo.TAILSPIN)
    consented_grant.refresh_from_db()
    assert consented_grant.state == ConsentGrant.State.ACTIVE


def test_a_second_call_is_served_from_the_cache_without_the_identity_provider(
    consented_grant, panel_settings, service_actor
) -> None:
    first = _get(consented_grant, service_actor)
    before = _refreshes(panel_settings)
    second = _get(consented_grant, service_actor)
    assert second.token == first.token
    assert _refreshes(panel_settings) == before
    issued = AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_ISSUED)
    assert issued.count() == 2
    assert set(issued.values_list("purpose", flat=True)) == {"list customers"}


def test_a_cached_token_with_five_minutes_or_less_left_is_not_served(consented_grant, service_actor) -> None:
    first = _get(consented_grant, service_actor)
    almost_expired = AccessToken(
        first.token, timezone.now() + timedelta(minutes=6), "partner_center", "", None
    )
    broker.cached_token_put(grant=consented_grant, token=almost_expired, now=timezone.now())
    lookup = {"grant": consented_grant, "audience": "partner_center", "customer": None}
    assert broker.cached_token_get(**lookup, now=timezone.now() + timedelta(minutes=2)) is None
    assert broker.cached_token_get(**lookup, now=timezone.now()) is not None
    # The one-statement hit applies the same margin: the token is refreshed, not served.
    CachedAccessToken.objects.update(expires_at=timezone.now() + timedelta(minutes=5))
    assert _get(consented_grant, service_actor).token != first.token


def test_a_cached_token_of_another_grant_generation_or_audience_does_not_decrypt(
    consented_grant, service_actor
) -> None:
    _get(consented_grant, service_actor)
    row = CachedAccessToken.objects.get()
    for generation, audience in ((row.generation + 1, row.audience), (row.generation, "graph")):
        context = broker._seal_context(row.grant_id, generation, audience, None)
        assert broker._unseal(bytes(row.sealed), context) is None
    assert broker._unseal(
        bytes(row.sealed), broker._seal_context(row.grant_id, row.generation, row.audience, None)
    )


def test_the_newest_refresh_token_is_persisted(consented_grant, service_actor) -> None:
    before = consented_grant.refresh_token
    _get(consented_grant, service_actor, "arm")
    consented_grant.refresh_from_db()
    assert consented_grant.refresh_token != before
    assert consented_grant.last_refreshed_at is not None


@pytest.mark.parametrize("purpose", ["", "   ", "x" * 501, "line\nbreak"])
def test_a_missing_or_bad_purpose_is_refused_before_anything_happens(
    consented_grant, service_actor, purpose
) -> None:
    with pytest.raises(InvalidRequest):
        _get(consented_grant, service_actor, purpose=purpose)
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_ISSUED).exists()


def test_an_audience_not_consented_is_refused_and_audited(consented_grant, service_actor) -> None:
    with pytest.raises(AudienceNotConsented):
        _get(consented_grant, service_actor, "exchange")
    denied = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_DENIED)
    assert denied.error_code == "audience_not_consented"


def test_revoke_destroys_the_token_and_the_broker_refuses_at_once(
    consented_grant, panel_settings, service_actor
) -> None:
    _get(consented_grant, service_actor)
    grant_revoke(grant=consented_grant, actor=Actor.system("test"))
    consented_grant.refresh_from_db()
    assert consented_grant.refresh_token is None
    before = panel_settings.control.counters()["token_requests"]["total"]
    with pytest.raises(GrantRevoked):
        _get(consented_grant, service_actor)
    assert panel_settings.control.counters()["token_requests"]["total"] == before


def test_the_kill_switch_suspends_and_resumes_issuance_with_audit(consented_grant, service_actor) -> None:
    staff = Actor.staff(1)
    kill_switch_set(engaged=True, actor=staff, reason="suspected compromise")
    with pytest.raises(IssuanceSuspended):
        _get(consented_grant, service_actor)
    kill_switch_set(engaged=False, actor=staff)
    assert _get(consented_grant, service_actor).token
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {AuditEvent.Action.KILL_SWITCH_ENGAGED, AuditEvent.Action.KILL_SWITCH_RELEASED} <= actions


def test_the_kill_switch_of_another_application_does_not_apply(consented_grant, service_actor) -> None:
    from tokens.models import Application

    other = Application.objects.create(
        name="other", client_id="other", authority_host="https://x", redirect_uri="https://x/cb"
    )
    kill_switch_set(engaged=True, actor=Actor.staff(1), application=other)
    assert _get(consented_grant, service_actor).token
    kill_switch_set(engaged=True, actor=Actor.staff(1), application=consented_grant.application)
    with pytest.raises(IssuanceSuspended):
        _get(consented_grant, service_actor)


PARTNER_SCENARIOS = {
    "revoked sessions": (lambda c: c.revoke_sessions(demo.ADMIN_AGENT), "AADSTS50173"),
    "inactive refresh token": (lambda c: c.expire_refresh_tokens(user=demo.ADMIN_AGENT), "AADSTS700082"),
    "conditional access block": (lambda c: c.tenant_policy(demo.CONTOSO, block=True), "AADSTS53003"),
    "consent removed": (lambda c: c.remove_consent(demo.CONTOSO, demo.CLIENT_ID), "AADSTS65001"),
}


@pytest.mark.parametrize("scenario", PARTNER_SCENARIOS)
def test_partner_class_failures_move_the_grant_to_needs_renewal(
    consented_grant, panel_settings, service_actor, scenario
) -> None:
    arrange, code = PARTNER_SCENARIOS[scenario]
    arrange(panel_settings.control)
    with pytest.raises(GrantNeedsRenewal):
        _get(consented_grant, service_actor)
    consented_grant.refresh_from_db()
    assert consented_grant.state == ConsentGrant.State.NEEDS_RENEWAL
    assert consented_grant.failure_class == "partner"
    assert consented_grant.failure_code == code
    assert OperatorAlert.objects.count() == 0


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (lambda c: c.expire_secret(demo.CLIENT_ID), "AADSTS7000222"),
        (lambda c: c.delete_secret(demo.CLIENT_ID), "AADSTS7000215"),
    ],
    ids=["secret expired", "secret deleted"],
)
def test_application_credential_failures_alert_the_operator_once_and_touch_no_grant(
    consented_grant,
    panel_settings,
    service_actor,
    settings,
    django_capture_on_commit_callbacks,
    arrange,
    code,
) -> None:
    settings.OPERATOR_ALERT_EMAILS = ["ops@example.invalid"]
    arrange(panel_settings.control)
    for audience in ("partner_center", "graph", "arm"):
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(IdentityProviderUnavailable):
            _get(consented_grant, service_actor, audience)
    consented_grant.refresh_from_db()
    assert consented_grant.state == ConsentGrant.State.ACTIVE
    assert consented_grant.failure_class == ""
    alert = OperatorAlert.objects.get()
    assert alert.code == code and alert.occurrences == 3
    assert len(mail.outbox) == 1 and code in mail.outbox[0].subject


@pytest.mark.parametrize(
    ("fault", "spec", "code"),
    [
        ("http_500", {}, "HTTP_500"),
        ("http_503", {}, "HTTP_503"),
        ("http_429", {"retry_after": 7}, "HTTP_429"),
        ("drop", {}, "CONNECTION"),
    ],
)
def test_transient_failures_change_no_state_and_are_not_hidden_by_msal_caches(
    consented_grant, panel_settings, service_actor, fault, spec, code
) -> None:
    panel_settings.control.add_fault(fault, count=1, **spec)
    with pytest.raises(IdentityProviderUnavailable) as raised:
        _get(consented_grant, service_actor)
    if fault == "http_429":
        assert raised.value.retry_after == 7
    consented_grant.refresh_from_db()
    assert consented_grant.state == ConsentGrant.State.ACTIVE
    assert consented_grant.failure_class == "transient" and consented_grant.failure_code == code
    # The fault is over: the very next call reaches the provider (MSAL's throttling cache would
    # have replayed the failure for 5 s) and succeeds.
    assert _get(consented_grant, service_actor).token
    consented_grant.refresh_from_db()
    assert consented_grant.failure_class == "" and consented_grant.failure_count == 0


def test_an_answer_slower_than_the_timeout_is_transient(
    consented_grant, panel_settings, service_actor, settings
) -> None:
    from tokens.issuance.identity import msal_apps_clear

    settings.IDENTITY_HTTP_TIMEOUT = 1
    msal_apps_clear()
    panel_settings.control.add_fault("timeout", count=1)
    with pytest.raises(IdentityProviderUnavailable):
        _get(consented_grant, service_actor)
    consented_grant.refresh_from_db()
    assert consented_grant.state == ConsentGrant.State.ACTIVE
    assert consented_grant.failure_code == "TIMEOUT"


def _audit_inserts_fail() -> None:
    """Make the database refuse audit rows, until the test's transaction rolls back."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION test_audit_down() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit table unavailable'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER test_audit_down BEFORE INSERT ON tokens_auditevent "
                "FOR EACH ROW EXECUTE FUNCTION test_audit_down()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_audit_down BEFORE INSERT ON tokens_auditevent "
                "BEGIN SELECT RAISE(ABORT, 'audit table unavailable'); END"
            )


def test_if_the_audit_write_fails_no_token_leaves_and_nothing_is_persisted(
    consented_grant, service_actor
) -> None:
    cached = _get(consented_grant, service_actor)
    consented_grant.refresh_from_db()
    before = consented_grant.refresh_token
    _audit_inserts_fail()
    # A hit (the savepoint keeps the test's own transaction usable after the failure).
    with pytest.raises(DatabaseError), transaction.atomic():
        _get(consented_grant, service_actor)
    # A miss: the refresh succeeds at the provider, but neither its refresh token nor the access token is kept.
    CachedAccessToken.objects.all().delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        _get(consented_grant, service_actor)
    consented_grant.refresh_from_db()
    assert consented_grant.refresh_token == before
    assert not CachedAccessToken.objects.exists()
    assert cached.token


def test_mfa_newly_required_for_a_grant_without_mfa_needs_renewal(
    consented_grant, panel_settings, service_actor
) -> None:
    """The panel refuses consents without MFA, so this grant stands for one imported from an older
    system: its refresh token comes from a sign-in without MFA, and the tenant now requires MFA."""
    app = panel_settings.msal_app()
    flow = app.initiate_auth_code_flow([demo.PARTNER_CENTER_SCOPE], redirect_uri=demo.REDIRECT_URI)
    answer = panel_settings.sign_in(flow["auth_uri"], demo.ADMIN_AGENT, mfa=False)
    consented_grant.refresh_token = app.acquire_token_by_auth_code_flow(flow, answer)["refresh_token"]
    consented_grant.save()
    panel_settings.control.tenant_policy(demo.CONTOSO, require_mfa=True)
    with pytest.raises(GrantNeedsRenewal):
        _get(consented_grant, service_actor)
    consented_grant.refresh_from_db()
    assert consented_grant.state == ConsentGrant.State.NEEDS_RENEWAL
    assert consented_grant.failure_code == "AADSTS50076"


def test_a_cache_hit_on_postgresql_is_one_sql_statement(
    postgres_only, consented_grant, service_actor, django_assert_num_queries
) -> None:
    first = _get(consented_grant, service_actor)  # fills the cache
    ConsentGrant.objects.update(last_used_at=None)  # so that the hit also stamps the last use
    with django_assert_num_queries(1):
        assert _get(consented_grant, service_actor).token == first.token
    issued = AuditEvent.objects.filter(action=AuditEvent.Action.TOKEN_ISSUED).order_by("id")
    assert [event.detail for event in issued] == ["refreshed from the identity provider", "served from cache"]
    hit = issued.last()
    assert hit is not None
    assert (hit.grant_id, hit.partner_id, hit.application_id, hit.purpose, hit.client_ip) == (
        consented_grant.pk, consented_grant.partner_id, consented_grant.application_id, "list customers", "127.0.0.1"
    )  # fmt: skip
    consented_grant.refresh_from_db()
    assert consented_grant.last_used_at is not None


@pytest.mark.parametrize(
    "refuse",
    [
        lambda grant: kill_switch_set(engaged=True, actor=Actor.staff(1)),
        lambda grant: kill_switch_set(engaged=True, actor=Actor.staff(1), application=grant.application),
        lambda grant: Partner.objects.filter(pk=grant.partner_id).update(status=Partner.Status.SUSPENDED),
        lambda grant: ConsentGrant.objects.filter(pk=grant.pk).update(state=ConsentGrant.State.NEEDS_RENEWAL),
        lambda grant: ConsentGrant.objects.filter(pk=grant.pk).update(audiences=["graph"]),
    ],
    ids=[
        "kill switch",
        "application kill switch",
        "partner suspended",
        "needs renewal",
        "audience withdrawn",
    ],
)
def test_the_hit_statement_inserts_nothing_when_a_check_fails(
    postgres_only, consented_grant, service_actor, refuse
) -> None:
    _get(consented_grant, service_actor)
    refuse(consented_grant)
    before = AuditEvent.objects.count()
    hit = broker.cached_token_issue(
        partner_tenant_id=consented_grant.partner.tenant_id,
        audience="partner_center",
        customer=None,
        purpose="list customers",
        actor=service_actor,
    )
    assert hit is None
    assert AuditEvent.objects.count() == before


def test_a_grant_not_read_with_its_kill_switch_state_is_treated_as_suspended(consented_grant) -> None:
    refusal = broker._check_issuable(ConsentGrant.objects.get(pk=consented_grant.pk), "partner_center")
    assert isinstance(refusal, IssuanceSuspended)
    assert (
        broker._check_issuable(
            broker.grants_find(partner_tenant_id=consented_grant.partner.tenant_id)[0], "partner_center"
        )
        is None
    )


def test_a_partner_with_grants_for_two_applications_must_name_one(consented_grant, service_actor) -> None:
    from tokens.models import Application

    other = Application.objects.create(
        name="other", client_id="other", authority_host="https://x", redirect_uri="https://x/cb"
    )
    ConsentGrant.objects.create(
        partner=consented_grant.partner, application=other, consented_by_oid=consented_grant.consented_by_oid,
        consented_by_upn="x", consented_by_role="admin_agent", mfa_at_consent=True,
        consented_at=timezone.now(), policy_expires_at=timezone.now(), audiences=["graph"],
    )  # fmt: skip
    with pytest.raises(InvalidRequest, match="name the application"):
        _get(consented_grant, service_actor)
    assert _get(consented_grant, service_actor, application=consented_grant.application).token


def test_the_current_credential_is_the_newest_valid_one(consented_grant) -> None:
    application = consented_grant.application
    current = ApplicationCredential.objects.get(application=application)
    now = timezone.now()
    for not_before, disabled_at in ((now + timedelta(hours=1), None), (now, now)):  # not yet valid; disabled
        ApplicationCredential.objects.create(
            application=application,
            kind=ApplicationCredential.Kind.SECRET,
            secret="unused",
            not_before=not_before,
            expires_at=now + timedelta(days=30),
            disabled_at=disabled_at,
        )
    assert credential_current_id(application=application) == current.pk
    ApplicationCredential.objects.filter(pk=current.pk).update(expires_at=now - timedelta(seconds=1))
    with pytest.raises(NoUsableCredential):
        credential_current_id(application=application)


def test_without_a_usable_credential_no_request_leaves_and_the_operator_is_alerted(
    consented_grant, panel_settings, service_actor
) -> None:
    ApplicationCredential.objects.update(disabled_at=timezone.now())
    before = _refreshes(panel_settings)
    with pytest.raises(IdentityProviderUnavailable):
        _get(consented_grant, service_actor)
    assert _refreshes(panel_settings) == before
    assert OperatorAlert.objects.get().code == "AADSTS7000222"
    consented_grant.refresh_from_db()
    assert consented_grant.state == ConsentGrant.State.ACTIVE

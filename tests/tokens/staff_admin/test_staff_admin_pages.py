"""The staff pages for grants, service clients and the kill switch: what they show, the filters
the admin home links to, and every way their forms can be misused (missing reason, bad network,
no audience, forged or unknown ids, GET where POST is needed): a clear answer, nothing changed,
never a 500."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from partners.models import Partner
from sandbox import demo
from tests.fixtures.staff import grant_make, otp_login, partner_make
from tokens.audit import Actor
from tokens.issuance.killswitch import kill_switch_set
from tokens.models import Application, AuditEvent, ConsentGrant, KillSwitch, ServiceClient
from tokens.staff_admin.base import FORGED_SELECTION, VANISHED_SELECTION
from tokens.staff_admin.grants import lapse_describe
from tokens.staff_admin.health import health_summary_get

pytestmark = pytest.mark.django_db

GRANTS = "/admin/tokens/consentgrant/"
KEY = re.compile(r"samcp_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}")
UNKNOWN_ID = "6b1a2a4e-0000-4000-8000-000000000000"


@pytest.fixture
def contoso(app_row: Application) -> ConsentGrant:
    partner = partner_make(tenant_id=demo.CONTOSO, name="Contoso")
    return grant_make(partner=partner, application=app_row, refresh_token="canary-rt-staff-pages-5e1d")


def _grant(app_row: Application, name: str, number: int, **fields: Any) -> ConsentGrant:
    partner = Partner.objects.create(
        tenant_id=f"00000000-0000-4000-8000-{number:012d}", display_name=name, domain=f"{number}.example"
    )
    return grant_make(partner=partner, application=app_row, **fields)


def _shown(response) -> list[str]:
    return sorted(grant.partner.display_name for grant in response.context["cl"].result_list)


def _viewer(client: Client) -> Client:
    """A staff member who may look at grants but not change them."""
    viewer = User.objects.create_user("viewer", "viewer@example.invalid", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_consentgrant"))
    otp_login(client, viewer)
    return client


# --- The grants list --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(days=7), "lapses in 7 days"),
        (timedelta(days=6, hours=12), "lapses in 7 days"),
        (timedelta(days=1, hours=1), "lapses in 2 days"),
        (timedelta(hours=20), "lapses within a day"),
        (timedelta(0), "lapses within a day"),
        (-timedelta(hours=5), "lapsed under a day ago"),
        (-timedelta(days=1, hours=2), "lapsed 1 day ago"),
        (-timedelta(days=3, hours=1), "lapsed 3 days ago"),
    ],
)
def test_the_lapse_in_words(offset: timedelta, text: str) -> None:
    now = timezone.now()
    assert lapse_describe(expires_at=now + offset, now=now) == text


def test_the_list_shows_names_coloured_states_and_the_lapse(staff_client: Client, contoso, app_row) -> None:
    ConsentGrant.objects.filter(pk=contoso.pk).update(policy_expires_at=timezone.now() + timedelta(days=5))
    _grant(
        app_row, "Fabrikam", 1, state="needs_renewal", failure_class="partner", failure_code="AADSTS700082"
    )
    _grant(app_row, "Litware", 2, state="expired", refresh_token=None,
           policy_expires_at=timezone.now() - timedelta(days=3, hours=2))  # fmt: skip
    page = staff_client.get(GRANTS).content.decode()
    # The partner's name, its tenant id on hover; the application under it.
    assert f'<span title="Tenant {demo.CONTOSO}">Contoso</span>' in page
    assert '<span class="row-note">Reports</span>' in page
    # Each state in words and in colour; the failure under the state.
    assert '<span class="badge badge-ok" title="Active">Active</span>' in page
    assert '<span class="badge badge-bad" title="Needs renewal by the partner">Needs renewal</span>' in page
    assert '<span class="badge badge-muted" title="Expired">Expired</span>' in page
    assert "partner failure, AADSTS700082" in page
    assert "lapses in 5 days" in page and "lapsed 3 days ago" in page
    assert "tokens/staff_admin.css" in page  # the badges' colours, from a static file (CSP)
    assert 'style="' not in page.split('id="result_list"')[1].split("</table>")[0]


def test_the_lapse_and_state_filters_that_the_admin_home_links_to(staff_client: Client, app_row) -> None:
    now = timezone.now()
    _grant(app_row, "In five days", 1, policy_expires_at=now + timedelta(days=5))
    _grant(app_row, "In twenty days", 2, state="expiring", policy_expires_at=now + timedelta(days=20))
    _grant(app_row, "In sixty days", 3, policy_expires_at=now + timedelta(days=60))
    _grant(app_row, "Revoked, would lapse in 3 days", 4, state="revoked", refresh_token=None,
           policy_expires_at=now + timedelta(days=3))  # fmt: skip
    _grant(
        app_row, "Lapsed", 5, state="expired", refresh_token=None, policy_expires_at=now - timedelta(days=2)
    )
    assert _shown(staff_client.get(GRANTS, {"lapses": "7"})) == ["In five days"]
    assert _shown(staff_client.get(GRANTS, {"lapses": "30"})) == ["In five days", "In twenty days"]
    assert _shown(staff_client.get(GRANTS, {"lapses": "lapsed"})) == ["Lapsed"]
    # The same numbers as the health summary (the admin home's counts link to these lists).
    summary = health_summary_get()
    assert (summary.expiring_7_days, summary.expiring_30_days) == (1, 2)
    # ?state=<value>, every state; the admin's own ?state__exact= still works.
    for state in ConsentGrant.State:
        response = staff_client.get(GRANTS, {"state": state.value})
        assert response.status_code == 200
        assert all(grant.state == state for grant in response.context["cl"].result_list), state
    assert _shown(staff_client.get(GRANTS, {"state": "expiring"})) == ["In twenty days"]
    assert _shown(staff_client.get(GRANTS, {"state__exact": "expired"})) == ["Lapsed"]
    # The filters are offered by name, each a link to these URLs.
    page = staff_client.get(GRANTS).content.decode()
    for href, label in [("?lapses=7", "In the next 7 days"), ("?lapses=30", "In the next 30 days"),
                        ("?lapses=lapsed", "Lapsed"), ("?state=needs_attention", "Needs attention")]:  # fmt: skip
        assert f'href="{href}"' in page and label in page, href
    # Anything else filters nothing, or matches nothing; never an error.
    assert len(_shown(staff_client.get(GRANTS, {"lapses": "9999"}))) == 5
    assert len(_shown(staff_client.get(GRANTS, {"lapses": "'; DROP TABLE"}))) == 5
    assert _shown(staff_client.get(GRANTS, {"state": "bogus"})) == []


def test_the_list_is_searched_by_tenant_id_and_name(staff_client: Client, contoso, app_row) -> None:
    _grant(app_row, "Fabrikam", 1)
    assert _shown(staff_client.get(GRANTS, {"q": demo.CONTOSO})) == ["Contoso"]
    assert _shown(staff_client.get(GRANTS, {"q": "fab"})) == ["Fabrikam"]


# --- A grant's page ------------------------------------------------------------------------------


def test_a_grants_page_is_titled_in_words_with_its_operations(staff_client: Client, contoso) -> None:
    response = staff_client.get(f"{GRANTS}{contoso.pk}/change/")
    page = response.content.decode()
    assert "<title>Reports for Contoso | SAM control panel</title>" in page
    assert "<h1>Reports for Contoso</h1>" in page
    head = page.split('<div id="content-main">')[0]
    assert str(contoso.pk) not in head and str(contoso.partner_id) not in head
    assert f'action="{GRANTS}{contoso.pk}/refresh/"' in page and "Refresh now</button>" in page
    assert f'href="{GRANTS}{contoso.pk}/revoke/"' in page
    assert f'href="/admin/tokens/auditevent/?grant={contoso.pk}"' in page
    assert "canary-rt-staff-pages-5e1d" not in page
    # An ended grant offers neither operation; its events still.
    ConsentGrant.objects.filter(pk=contoso.pk).update(state="revoked", refresh_token=None)
    page = staff_client.get(f"{GRANTS}{contoso.pk}/change/").content.decode()
    assert "/refresh/" not in page and "/revoke/" not in page and f"?grant={contoso.pk}" in page


def test_staff_who_may_only_look_get_no_operations(client: Client, contoso) -> None:
    viewer = _viewer(client)
    page = viewer.get(f"{GRANTS}{contoso.pk}/change/").content.decode()
    assert "Reports for Contoso" in page and "/refresh/" not in page and "/revoke/" not in page
    assert viewer.post(f"{GRANTS}{contoso.pk}/refresh/").status_code == 403
    assert viewer.get(f"{GRANTS}{contoso.pk}/revoke/").status_code == 403
    assert viewer.post(f"{GRANTS}{contoso.pk}/revoke/", {"confirmed": "1", "reason": "x"}).status_code == 403
    listed = viewer.get(GRANTS).content.decode()
    assert "Contoso" in listed and 'value="revoke"' not in listed and 'value="refresh_now"' not in listed
    forged = {"action": "revoke", "_selected_action": [str(contoso.pk)], "confirmed": "1", "reason": "x"}
    assert viewer.post(GRANTS, forged).status_code in (200, 302)
    assert ConsentGrant.objects.get(pk=contoso.pk).state == "active" and not AuditEvent.objects.exists()


def test_refresh_now_from_the_grants_page(consented_grant: ConsentGrant, staff_user: User) -> None:
    client = Client()
    otp_login(client, staff_user)
    url = f"{GRANTS}{consented_grant.pk}/refresh/"
    # GET changes nothing.
    assert client.get(url).status_code == 405
    assert not AuditEvent.objects.filter(action="refreshed").exists()
    before = ConsentGrant.objects.get().refresh_token
    response = client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == f"{GRANTS}{consented_grant.pk}/change/"
    assert "SAM Control Panel (demo) for Contoso Partner: refreshed." in response.content.decode()
    assert ConsentGrant.objects.get().refresh_token != before
    event = AuditEvent.objects.get(action="refreshed")
    assert (event.actor_type, event.actor_id) == ("staff", str(staff_user.pk))


def test_refresh_now_refuses_a_grant_it_cannot_refresh(staff_client: Client, contoso) -> None:
    ConsentGrant.objects.filter(pk=contoso.pk).update(state="needs_renewal")
    response = staff_client.post(f"{GRANTS}{contoso.pk}/refresh/", follow=True)
    assert (
        "Reports for Contoso: not refreshed, its state is “Needs renewal by the partner”."
        in response.content.decode()
    )
    assert not AuditEvent.objects.exists()
    # Unknown and malformed ids: 404, nothing done.
    assert staff_client.post(f"{GRANTS}{UNKNOWN_ID}/refresh/").status_code == 404
    assert staff_client.post(f"{GRANTS}not-a-grant/refresh/").status_code in (302, 404)
    assert not AuditEvent.objects.exists()


def test_revoke_from_the_grants_page_asks_for_a_reason(
    staff_client: Client, staff_user: User, contoso
) -> None:
    url = f"{GRANTS}{contoso.pk}/revoke/"
    # GET: the confirmation page, naming the grant in words; nothing changed.
    page = staff_client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Revoke Reports for Contoso" in body and 'name="reason"' in body
    assert f'href="{GRANTS}{contoso.pk}/change/" class="button cancel-link"' in body
    # POST without the confirmation, or with a blank reason: the page again, nothing changed.
    assert 'name="reason"' in staff_client.post(url).content.decode()
    blank = staff_client.post(url, {"confirmed": "1", "reason": "   "})
    assert blank.status_code == 200 and "A reason is required" in blank.content.decode()
    too_long = staff_client.post(url, {"confirmed": "1", "reason": "x" * 501})
    assert too_long.status_code == 200 and "at most 500 characters" in too_long.content.decode()
    assert ConsentGrant.objects.get(pk=contoso.pk).state == "active" and not AuditEvent.objects.exists()
    # With a reason: revoked, audited as the staff user's action with the reason.
    done = staff_client.post(url, {"confirmed": "1", "reason": "fraud report 12"})
    assert done.status_code == 302 and done.headers["Location"] == f"{GRANTS}{contoso.pk}/change/"
    grant = ConsentGrant.objects.get(pk=contoso.pk)
    assert grant.state == "revoked" and grant.refresh_token is None
    (event,) = AuditEvent.objects.filter(action="revoked")
    assert (event.actor_type, event.actor_id, event.detail) == (
        "staff",
        str(staff_user.pk),
        "fraud report 12",
    )
    # Again: nothing more happens, and the page says why.
    again = staff_client.post(url, {"confirmed": "1", "reason": "twice"}, follow=True)
    assert "Reports for Contoso is revoked already." in again.content.decode()
    assert AuditEvent.objects.filter(action="revoked").count() == 1
    assert staff_client.get(f"{GRANTS}{UNKNOWN_ID}/revoke/").status_code == 404


def test_the_revoke_action_on_the_list_asks_for_a_reason_too(staff_client: Client, contoso) -> None:
    selection = {"action": "revoke", "_selected_action": [str(contoso.pk)]}
    confirm = staff_client.post(GRANTS, selection)
    assert confirm.status_code == 200 and "Reports for Contoso" in confirm.content.decode()
    blank = staff_client.post(GRANTS, selection | {"confirmed": "1", "reason": ""})
    assert "A reason is required" in blank.content.decode()
    assert ConsentGrant.objects.get(pk=contoso.pk).state == "active" and not AuditEvent.objects.exists()
    assert staff_client.post(GRANTS, selection | {"confirmed": "1", "reason": "ticket 5"}).status_code == 302
    assert AuditEvent.objects.get(action="revoked").detail == "ticket 5"


def test_a_grants_events(staff_client: Client, contoso, app_row) -> None:
    other_app = Application.objects.create(
        name="Billing",
        client_id="billing-client",
        authority_host="https://login.example",
        redirect_uri="https://x/",
    )
    same_partner = grant_make(partner=contoso.partner, application=other_app)
    other_partner = _grant(app_row, "Fabrikam", 1)
    for grant, count in ((contoso, 3), (same_partner, 2), (other_partner, 4)):
        for _ in range(count):
            AuditEvent.objects.create(
                actor_type="service", actor_id="orders", action="token_issued", grant=grant,
                partner=grant.partner, application=grant.application,
            )  # fmt: skip
    url = "/admin/tokens/auditevent/"
    response = staff_client.get(url, {"grant": str(contoso.pk)})
    assert {event.grant_id for event in response.context["cl"].result_list} == {contoso.pk}
    assert response.context["cl"].result_count == 3
    assert "Reports for Contoso" in response.content.decode()  # the filter says whose events these are
    for junk in (UNKNOWN_ID, "not-a-uuid", "'"):
        response = staff_client.get(url, {"grant": junk})
        assert response.status_code == 200 and response.context["cl"].result_count == 0, junk
        assert "No such grant" in response.content.decode()


# --- Admin actions: forged selections -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "action"),
    [
        (GRANTS, "revoke"),
        (GRANTS, "refresh_now"),
        ("/admin/tokens/killswitch/", "engage"),
        ("/admin/tokens/application/", "kill_switch_engage"),
        ("/admin/partners/partner/", "suspend"),
        ("/admin/tokens/serviceclient/", "disable"),
        ("/admin/tokens/operatoralert/", "close"),
    ],
)
def test_a_forged_selection_changes_nothing(staff_client: Client, contoso, url: str, action: str) -> None:
    kill_switch_set(engaged=False, actor=Actor.system("test"), application=contoso.application)
    before = AuditEvent.objects.count()
    for forged in (["not-an-id"], ["1 OR 1=1"], [str(contoso.pk), "x"]):
        data = {"action": action, "_selected_action": forged, "confirmed": "1", "reason": "forged"}
        response = staff_client.post(url, data, follow=True)
        assert response.status_code == 200
        assert FORGED_SELECTION in response.content.decode(), forged
    # Ids of the right type that name nothing: refused as well, not run on nothing.
    unknown = {"action": action, "_selected_action": ["987654321"] if "killswitch" in url or "alert" in url
               or "serviceclient" in url else [UNKNOWN_ID], "confirmed": "1", "reason": "unknown"}  # fmt: skip
    assert VANISHED_SELECTION in staff_client.post(url, unknown, follow=True).content.decode()
    assert AuditEvent.objects.count() == before
    assert ConsentGrant.objects.get(pk=contoso.pk).state == "active"
    assert Partner.objects.get(pk=contoso.partner_id).status == "active"
    assert not KillSwitch.objects.filter(engaged=True).exists()


# --- Service clients ---------------------------------------------------------------------------


ADD = "/admin/tokens/serviceclient/add/"


def _client_form(**fields: object) -> dict[str, object]:
    return {"name": "orders", "audiences": ["graph"], "cidrs": "", "rate_limit_per_minute": "600", **fields}


def test_the_add_form_offers_the_configured_audiences_as_checkboxes(staff_client: Client, settings) -> None:
    settings.SAM_AUDIENCES = {
        **settings.SAM_AUDIENCES,
        "exchange": ["https://outlook.office365.com/.default"],
    }
    page = staff_client.get(ADD).content.decode()
    for value, label in [("partner_center", "Partner Center (partner_center)"), ("graph", "Microsoft Graph (graph)"),
                         ("arm", "Azure Resource Manager (arm)"), ("exchange", "exchange")]:  # fmt: skip
        assert re.search(
            rf'<input type="checkbox" name="audiences" value="{value}"[^>]*>\s*{re.escape(label)}', page
        )
    assert '<textarea name="cidrs"' in page
    # The add form asks only what staff set, and saves with one button (the key page follows).
    assert 'name="_addanother"' not in page and 'name="_continue"' not in page and "Key id" not in page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"audiences": []}, "audiences", "Choose at least one audience"),
        (
            {"audiences": ["exchange"]},
            "audiences",
            "Select a valid choice. exchange is not one of the available",
        ),
        ({"cidrs": "10.0.0.0/8\nnot-a-network"}, "cidrs", "Line 2, “not-a-network”, is not a network"),
        ({"cidrs": "10.0.0.0/33"}, "cidrs", "Line 1, “10.0.0.0/33”, is not a network"),
        (
            {"cidrs": "10.0.0.0/8, 192.168.0.0/16"},
            "cidrs",
            "is not a network: write one address or network per line",
        ),
        ({"cidrs": '["10.0.0.0/8"]'}, "cidrs", "Line 1"),
    ],
    ids=["no audience", "unknown audience", "bad line", "bad prefix", "comma list", "json"],
)
def test_a_bad_service_client_form_saves_nothing(
    staff_client: Client, fields, field: str, message: str
) -> None:
    response = staff_client.post(ADD, _client_form(**fields))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field] and message in errors[field][0], errors
    assert message.split("“")[0] in response.content.decode()
    assert KEY.search(response.content.decode()) is None
    assert not ServiceClient.objects.exists() and not AuditEvent.objects.exists()


def test_networks_are_typed_one_per_line_and_kept_as_networks(staff_client: Client) -> None:
    response = staff_client.post(
        ADD, _client_form(audiences=["graph", "arm"], cidrs="  10.1.2.3/8\n\n192.168.4.5\r\n2001:db8::1/32\n")
    )
    assert response.status_code == 200 and KEY.search(response.content.decode())
    client = ServiceClient.objects.get()
    assert client.audiences == ["graph", "arm"]
    assert client.cidrs == ["10.0.0.0/8", "192.168.4.5/32", "2001:db8::/32"]
    page = staff_client.get(f"/admin/tokens/serviceclient/{client.pk}/change/").content.decode()
    assert "10.0.0.0/8\n192.168.4.5/32\n2001:db8::/32</textarea>" in page
    # The list says the audiences in words.
    assert (
        "Microsoft Graph, Azure Resource Manager"
        in staff_client.get("/admin/tokens/serviceclient/").content.decode()
    )


def test_the_key_page_copies_the_key_and_forgets_the_form(staff_client: Client) -> None:
    response = staff_client.post(ADD, _client_form())
    page = response.content.decode()
    client = ServiceClient.objects.get()
    (key,) = KEY.findall(page)
    assert f'data-client-url="/admin/tokens/serviceclient/{client.pk}/change/">{key}</code>' in page
    assert 'id="copy-key"' in page and "tokens/copy_key.js" in page
    assert "<script>" not in page and "onclick" not in page  # the CSP allows static scripts only
    assert "no-store" in response["Cache-Control"]


# --- The kill switch --------------------------------------------------------------------------


def test_the_kill_switch_list_says_engaged_in_red_and_released_in_green(
    staff_client: Client, app_row
) -> None:
    kill_switch_set(engaged=True, actor=Actor.system("test"), reason="drill")
    kill_switch_set(engaged=False, actor=Actor.system("test"), application=app_row)
    page = staff_client.get("/admin/tokens/killswitch/").content.decode()
    assert '<span class="badge badge-bad" title="Token issuance is suspended">ENGAGED</span>' in page
    assert '<span class="badge badge-ok" title="Tokens are issued normally">Released</span>' in page
    assert "All applications" in page and "Reports" in page
    assert "icon-yes.svg" not in page and "icon-no.svg" not in page
    assert 'href="/admin/health/"' in page


def test_releasing_a_kill_switch_asks_for_a_reason_too(staff_client: Client, app_row) -> None:
    switch = kill_switch_set(engaged=True, actor=Actor.system("test"), application=app_row, reason="drill")
    selection = {"action": "release", "_selected_action": [str(switch.pk)]}
    for data in (selection, selection | {"confirmed": "1"}, selection | {"confirmed": "1", "reason": " "}):
        response = staff_client.post("/admin/tokens/killswitch/", data)
        assert response.status_code == 200 and 'name="reason"' in response.content.decode()
    assert KillSwitch.objects.get(pk=switch.pk).engaged
    assert not AuditEvent.objects.filter(actor_type="staff").exists()
    staff_client.post("/admin/tokens/killswitch/", selection | {"confirmed": "1", "reason": "drill over"})
    assert not KillSwitch.objects.get(pk=switch.pk).engaged
    assert AuditEvent.objects.get(actor_type="staff").detail == "drill over"


def test_the_health_pages_kill_switch_refuses_a_get_and_a_blank_reason(staff_client: Client) -> None:
    assert (
        staff_client.get(
            "/admin/health/", {"kill_switch": "engage", "confirmed": "1", "reason": "x"}
        ).status_code
        == 200
    )
    blank = staff_client.post("/admin/health/", {"kill_switch": "engage", "confirmed": "1", "reason": ""})
    assert "A reason is required" in blank.content.decode()
    assert not KillSwitch.objects.filter(engaged=True).exists() and not AuditEvent.objects.exists()


def test_resuming_a_partner_asks_for_a_reason(staff_client: Client, contoso) -> None:
    Partner.objects.filter(pk=contoso.partner_id).update(status="suspended")
    selection = {"action": "resume", "_selected_action": [str(contoso.partner_id)]}
    blank = staff_client.post("/admin/partners/partner/", selection | {"confirmed": "1", "reason": ""})
    assert "A reason is required" in blank.content.decode()
    assert (
        Partner.objects.get(pk=contoso.partner_id).status == "suspended" and not AuditEvent.objects.exists()
    )
    staff_client.post(
        "/admin/partners/partner/", selection | {"confirmed": "1", "reason": "cleared, ticket 8"}
    )
    assert Partner.objects.get(pk=contoso.partner_id).status == "active"
    assert AuditEvent.objects.get(action="partner_resumed").detail == "cleared, ticket 8"

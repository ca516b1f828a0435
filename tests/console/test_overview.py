"""The staff console's home: its figures (services, in a fixed number of queries), its links (each
number opens a list of exactly that many), its charts, and the pages around it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from html import unescape

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.charts import axis_label, axis_max, chart_svg
from console.overview import (
    ACTIVITY_DAYS,
    Chart,
    Series,
    activity_days,
    audit_activity_count,
    audit_activity_get,
    overview_figures,
)
from gdap.models import Inventory, Relationship
from gdap.overview import gdap_counts_get
from tests.console.data import ConsoleData, console_data_make
from tests.fixtures.staff import grant_make, otp_login, partner_make
from tokens.models import AuditEvent, ConsentGrant
from tokens.staff_admin.health import Status

pytestmark = pytest.mark.django_db

# overview_figures: grants by state, lapsing, failures of 24 hours, the heartbeat, alerts, kill
# switches, and the activity of the current day; the finished days, once, while not in the cache.
OVERVIEW_QUERIES = 7
OVERVIEW_QUERIES_COLD = OVERVIEW_QUERIES + 1


@pytest.fixture
def data() -> ConsoleData:
    return console_data_make()


def _series(overview, slug: str) -> dict[str, int]:
    chart = next(chart for chart in overview.charts if chart.slug == slug)
    assert len(chart.days) == ACTIVITY_DAYS
    return {series.key: series.total for series in chart.series}


def test_overview_figures_are_what_the_rows_say(data: ConsoleData) -> None:
    overview = overview_figures()
    health = overview.health
    assert {row.state: row.count for row in health.grants_by_state} == data.by_state
    assert (health.expiring_7_days, health.expiring_30_days) == (data.lapsing_7, data.lapsing_30)
    assert (health.open_alerts, health.paused_applications) == (1, 1)
    assert health.last_sweep_at == data.now and not health.sweep_stale
    assert health.engaged_kill_switches == []
    assert _series(overview, "issued") == data.issued_by_audience
    assert _series(overview, "refused") == data.refused_by_audience
    assert _series(overview, "renewals") == {"refreshed": data.refreshed, "renewed": data.renewed}
    assert _series(overview, "failures") == data.failures_by_class


def test_overview_days_are_utc_days_oldest_first_and_today_last(data: ConsoleData) -> None:
    chart = overview_figures().charts[0]
    today = timezone.now().date()
    assert chart.days[-1] == today and chart.days[0] == today - timedelta(days=ACTIVITY_DAYS - 1)
    # The fixture issues 3 Partner Center tokens every day, and Graph tokens 1 to 4 a day.
    graph = next(series for series in chart.series if series.key == "graph")
    assert graph.counts[-1] == 1 and graph.counts[-2] == 2 and graph.counts[0] == 1 + 29 % 4
    assert chart.rows[0] == (today, [3, 1, 0])


def test_overview_figures_take_a_fixed_number_of_queries(
    data: ConsoleData, django_assert_num_queries
) -> None:
    with django_assert_num_queries(OVERVIEW_QUERIES_COLD):
        overview_figures()
    partners = [
        partner_make(tenant_id=f"10000000-0000-4000-8000-{i:012d}", name=f"More{i}") for i in range(50)
    ]
    for partner in partners:
        grant_make(
            partner=partner, application=data.application, policy_expires_at=data.now + timedelta(days=2)
        )
    AuditEvent.objects.bulk_create(
        AuditEvent(actor_type="service", action="token_issued", audience="arm", at=timezone.now())
        for _ in range(500)
    )
    with django_assert_num_queries(OVERVIEW_QUERIES):
        overview = overview_figures()
    assert overview.health.expiring_7_days == data.lapsing_7 + 50
    assert _series(overview, "issued")["arm"] == data.issued_by_audience["arm"] + 500  # today: counted live


def test_finished_days_are_counted_once_and_today_on_every_view(data: ConsoleData) -> None:
    """The trail is append-only: a day that has ended (and settled) does not change, so its counts
    are cached; the current day is counted on each view."""
    now = timezone.now()
    days = activity_days(now=now)
    with CaptureQueriesContext(connection) as cold:
        first = audit_activity_get(days=days, now=now)
    assert len(cold) == 2  # the 29 finished days in one query, today in another
    with CaptureQueriesContext(connection) as warm:
        again = audit_activity_get(days=days, now=now)
    assert len(warm) == 1 and again == first
    assert '"tokens_auditevent"."at" <' not in warm[0]["sql"]  # today, open-ended


def test_a_day_is_cached_only_once_it_has_settled(data: ConsoleData) -> None:
    """Ten minutes after midnight, yesterday is still counted live: rows stamped just before
    midnight may commit just after it."""
    today = timezone.now().date()
    just_after_midnight = datetime.combine(today, time(0, 5), tzinfo=UTC)
    days = activity_days(now=just_after_midnight)
    audit_activity_get(days=days, now=just_after_midnight)
    yesterday = datetime.combine(today - timedelta(days=1), time(23, 59, 59), tzinfo=UTC)
    AuditEvent.objects.create(actor_type="service", action="renewed", at=yesterday)
    counts = audit_activity_get(days=days, now=just_after_midnight)
    assert ("renewed", "other", "", 1) in counts[today - timedelta(days=1)]
    settled = datetime.combine(today, time(0, 11), tzinfo=UTC)
    with CaptureQueriesContext(connection) as queries:
        counts = audit_activity_get(days=activity_days(now=settled), now=settled)
    assert len(queries) == 2  # yesterday is counted (and cached) now that it has settled; today live
    assert ("renewed", "other", "", 1) in counts[today - timedelta(days=1)]


def test_the_activity_is_one_grouped_query_bounded_to_the_window(data: ConsoleData) -> None:
    start = datetime.combine(timezone.now().date() - timedelta(days=12), time.min, tzinfo=UTC)
    with CaptureQueriesContext(connection) as queries:
        by_day = audit_activity_count(start=start, end=start + timedelta(days=3))
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert "GROUP BY" in sql and '"tokens_auditevent"."at" >=' in sql and '"tokens_auditevent"."at" <' in sql
    assert '"action" IN' in sql
    # One row per day, action, audience and class, not one per event.
    assert sorted(by_day) == [start.date() + timedelta(days=n) for n in range(3)]
    assert sorted(by_day[start.date()]) == [
        ("refresh_failed", "other", "operator", 1),
        ("refreshed", "partner_center", "", 1),
        ("token_issued", "graph", "", 1),
        ("token_issued", "partner_center", "", 3),
    ]


def test_admin_home_queries_do_not_grow_with_the_rows(staff_client: Client, data: ConsoleData) -> None:
    staff_client.get("/admin/")
    with CaptureQueriesContext(connection) as before:
        assert staff_client.get("/admin/").status_code == 200
    for i in range(30):
        partner = partner_make(tenant_id=f"20000000-0000-4000-8000-{i:012d}", name=f"Extra{i}")
        grant_make(partner=partner, application=data.application, state="needs_attention")
    AuditEvent.objects.bulk_create(
        AuditEvent(actor_type="system", action="refresh_failed", detail="attention: AADSTS1", at=data.now)
        for _ in range(200)
    )
    with CaptureQueriesContext(connection) as after:
        assert staff_client.get("/admin/").status_code == 200
    assert len(after) == len(before), [query["sql"] for query in after.captured_queries]


def _link(page: str, element_id: str) -> tuple[str, int]:
    match = re.search(rf'<a id="{element_id}" href="([^"]+)"[^>]*>([\d,]+)</a>', page)
    assert match, element_id
    return unescape(match.group(1)), int(match.group(2).replace(",", ""))


def _listed(client: Client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, url
    assert "?e=1" not in response.get("Location", ""), url
    return int(response.context["cl"].result_count)


def test_each_number_opens_a_list_of_exactly_that_many(staff_client: Client, data: ConsoleData) -> None:
    page = staff_client.get("/admin/").content.decode()
    for state in ConsentGrant.State:
        url, shown = _link(page, f"state-{state.value}")
        assert shown == data.by_state[state.value]
        listed = staff_client.get(url).context["cl"]
        assert listed.result_count == shown, state
        assert {grant.state for grant in listed.result_list} <= {state.value}
    for element_id, expected in [("open-alerts", 1), ("paused-applications", 1), ("grants-attention", 1)]:
        url, shown = _link(page, element_id)
        assert shown == expected and _listed(staff_client, url) == shown, element_id


def test_each_lapsing_number_opens_a_list_of_exactly_that_many(
    staff_client: Client, data: ConsoleData
) -> None:
    """The grants list's `lapses` filter holds exactly the grants the console counts."""
    page = staff_client.get("/admin/").content.decode()
    for element_id, expected in [("lapsing-7", data.lapsing_7), ("lapsing-30", data.lapsing_30)]:
        url, shown = _link(page, element_id)
        assert shown == expected and url.endswith(f"?lapses={element_id[8:]}")
    for element_id in ("lapsing-7", "lapsing-30"):
        url, shown = _link(page, element_id)
        assert _listed(staff_client, url) == shown, element_id


def test_the_list_a_state_opens_says_so_in_its_filter(staff_client: Client, data: ConsoleData) -> None:
    """The list a state's number opens names that state in its filter sidebar."""
    page = staff_client.get("/admin/").content.decode()
    for state in ConsentGrant.State:
        url, _ = _link(page, f"state-{state.value}")
        specs = staff_client.get(url).context["cl"].filter_specs
        assert [spec.value() for spec in specs if getattr(spec, "parameter_name", None) == "state"] == [
            state.value
        ]


def test_home_links_to_all_models_and_health(staff_client: Client, data: ConsoleData) -> None:
    page = staff_client.get("/admin/").content.decode()
    assert 'href="/admin/models/">All models</a>' in page and 'href="/admin/health/">Health</a>' in page
    models = staff_client.get("/admin/models/")
    assert models.status_code == 200 and "All models" in models.content.decode()
    assert {app["app_label"] for app in models.context["app_list"]} >= {"partners", "tokens"}


def test_the_models_list_has_no_code_names_for_headings(staff_client: Client) -> None:
    page = staff_client.get("/admin/models/").content.decode()
    assert "OTP_TOTP" not in page and "Kill switchs" not in page
    assert ">Kill switches</a>" in page


def test_the_home_refuses_what_it_does_not_serve(staff_user: User, data: ConsoleData) -> None:
    anonymous = Client().get("/admin/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    password_only = Client()
    password_only.force_login(staff_user)  # no authenticator code in this session
    assert password_only.get("/admin/").status_code == 302
    signed_in = Client()
    otp_login(signed_in, staff_user)
    assert signed_in.post("/admin/").status_code == 405
    assert signed_in.get("/admin/", {"state": "junk", "days": "-1"}).status_code == 200


def test_charts_are_svg_without_style_or_script(data: ConsoleData) -> None:
    for chart in overview_figures().charts:
        svg = str(chart_svg(chart=chart))
        assert svg.startswith('<svg class="console-chart"') and 'role="img"' in svg
        assert "style=" not in svg and "<script" not in svg and "on" + "load" not in svg
        assert f'<title id="chart-{chart.slug}-title">{chart.title}</title>' in svg
        bars = sum(1 for series in chart.series for count in series.counts if count)
        assert svg.count("<rect ") == bars


def test_chart_text_is_escaped() -> None:
    chart = Chart("x", "<b>x</b>", [date(2026, 1, 1)], [Series("k", '<script>"</script>', [3])])
    svg = str(chart_svg(chart=chart))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg


def test_axis_scale_and_labels() -> None:
    assert [axis_max(v) for v in (0, 1, 2, 3, 5, 9, 10, 11, 45, 101, 7_001)] == [
        2, 2, 2, 4, 6, 10, 10, 20, 60, 200, 8_000,
    ]  # fmt: skip
    assert [axis_label(v) for v in (0, 1, 1.5, 20, 1_500, 2_000_000)] == ["0", "1", "1.5", "20", "1.5k", "2M"]


def test_an_empty_trail_draws_empty_charts(staff_client: Client) -> None:
    page = staff_client.get("/admin/").content.decode()
    assert page.count("No events in these 30 days") == 4


def test_a_junk_state_lists_no_grant_and_the_old_parameter_still_works(
    staff_client: Client, data: ConsoleData
) -> None:
    response = staff_client.get("/admin/tokens/consentgrant/", {"state": "junk"})
    assert response.status_code == 200 and response.context["cl"].result_count == 0
    assert (
        staff_client.get("/admin/tokens/consentgrant/", {"state__exact": "active"}).context["cl"].result_count
        == 3
    )


def test_gdap_numbers_open_lists_of_exactly_that_many(staff_client: Client, data: ConsoleData) -> None:
    """Relationships ending (not auto-extended, which end only if Microsoft does not extend them) and
    inventories that failed or were never read: each number opens a list of exactly that many."""
    now = timezone.now()
    partners = [
        partner_make(tenant_id=f"30000000-0000-4000-8000-{i:012d}", name=f"Gdap{i}") for i in range(3)
    ]
    for index, (days, auto_extends) in enumerate([(3, False), (20, False), (20, True), (60, False)]):
        Relationship.objects.create(
            partner=partners[0], relationship_id=f"rel-{index}", display_name=f"Rel {index}",
            customer_tenant_id=f"40000000-0000-4000-8000-{index:012d}", customer_name=f"Customer {index}",
            status="active", auto_extends=auto_extends, ends_at=now + timedelta(days=days),
            first_seen_at=now, last_seen_at=now,
        )  # fmt: skip
    Inventory.objects.create(partner=partners[0], read_at=now, attempted_at=now)
    Inventory.objects.create(
        partner=partners[1], attempted_at=now, error_code="403", error="Authorization_RequestDenied"
    )
    Inventory.objects.create(partner=partners[2])
    assert gdap_counts_get().status == Status.WARNING
    page = staff_client.get("/admin/").content.decode()
    expected = {"gdap-ending-7": 1, "gdap-ending-30": 2, "gdap-failing": 1, "gdap-never-read": 2}
    for element_id, count in expected.items():
        url, shown = _link(page, element_id)
        assert shown == count, element_id
        assert _listed(staff_client, url) == count, element_id
    Relationship.objects.update(auto_extends=True)
    Inventory.objects.update(error_code="")
    assert gdap_counts_get().status == Status.OK

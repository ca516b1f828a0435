"""Relationships ending soon: e-mailed once per threshold (30 and 7 days) to the consenting admin
agent and the partner's notification contacts, never for auto-extended, ended or gone ones; counted
for the staff console."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client

from gdap.inventory import gdap_inventory_refresh, gdap_inventory_sweep
from gdap.models import Relationship, RelationshipWarning
from gdap.overview import gdap_counts_get
from partners.models import AgentRole
from sandbox import demo
from tests.fixtures.staff import dashboard_login, member_make
from tokens.audit import Actor
from tokens.renewal.contacts import notification_contact_add

pytestmark = pytest.mark.django_db


@pytest.fixture
def read(consented_grant, panel_settings):
    notification_contact_add(
        partner=consented_grant.partner, email="noc@contoso.example", actor=Actor.system("test")
    )
    assert gdap_inventory_refresh(partner_id=consented_grant.partner_id).outcome == "read"
    return consented_grant


def _sweep(capture) -> None:
    with capture(execute=True):
        gdap_inventory_sweep()


def test_a_relationship_ending_in_30_days_emails_once(read, django_capture_on_commit_callbacks) -> None:
    _sweep(django_capture_on_commit_callbacks)
    _sweep(django_capture_on_commit_callbacks)
    subjects = sorted(message.subject for message in mail.outbox)
    # Northwind (24 days) gets the 30-day warning, Litware (5 days) only the 7-day one; Wide World
    # Importers ends in 20 days but extends itself; the rest are not active or end later.
    assert subjects == [
        "GDAP relationship with Litware, Inc. ends in 5 days: Litware helpdesk",
        "GDAP relationship with Northwind Traders ends in 24 days: Northwind support",
    ]
    northwind = next(m for m in mail.outbox if "Northwind" in m.subject)
    assert northwind.to == [demo.ADMIN_AGENT, "noc@contoso.example"]
    assert "Helpdesk Administrator" in northwind.body and "not extended automatically" in northwind.body
    assert "http://127.0.0.1:8000/dashboard/" in northwind.body
    assert sorted(RelationshipWarning.objects.values_list("relationship__display_name", "days")) == [
        (demo.GDAP_LITWARE, 7),
        (demo.GDAP_NORTHWIND, 30),
    ]


def test_the_7_day_warning_follows_the_30_day_one_and_a_new_end_date_warns_again(
    read, panel_settings, django_capture_on_commit_callbacks
) -> None:
    _sweep(django_capture_on_commit_callbacks)
    mail.outbox.clear()
    panel_settings.control.gdap_end_date(demo.GDAP_NORTHWIND, 6 * 86400)
    gdap_inventory_refresh(partner_id=read.partner_id)
    _sweep(django_capture_on_commit_callbacks)
    _sweep(django_capture_on_commit_callbacks)
    assert [m.subject for m in mail.outbox] == [
        "GDAP relationship with Northwind Traders ends in 6 days: Northwind support"
    ]
    # Extended again, then approaching again: the new end date is warned about afresh.
    panel_settings.control.gdap_end_date(demo.GDAP_NORTHWIND, 20 * 86400)
    gdap_inventory_refresh(partner_id=read.partner_id)
    _sweep(django_capture_on_commit_callbacks)
    assert mail.outbox[-1].subject.endswith("ends in 20 days: Northwind support")
    assert RelationshipWarning.objects.filter(relationship__display_name=demo.GDAP_NORTHWIND).count() == 3


def test_no_warning_for_auto_extended_ended_or_gone_relationships(
    read, panel_settings, django_capture_on_commit_callbacks
) -> None:
    panel_settings.control.gdap_end_date(demo.GDAP_NORTHWIND, 10 * 86400, auto_extend="P180D")
    panel_settings.control.gdap_terminate(demo.GDAP_LITWARE)
    gdap_inventory_refresh(partner_id=read.partner_id)
    _sweep(django_capture_on_commit_callbacks)
    assert mail.outbox == []
    Relationship.objects.filter(display_name=demo.GDAP_NORTHWIND).update(
        auto_extends=False, gone_at="2026-01-01T00:00Z"
    )
    _sweep(django_capture_on_commit_callbacks)
    assert mail.outbox == []


def test_a_rolled_back_sweep_records_and_sends_nothing(read, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        gdap_inventory_sweep()
    assert len(callbacks) == 2 and mail.outbox == []  # the e-mails wait for the commit


def test_counts_for_the_staff_console(read) -> None:
    counts = gdap_counts_get()
    assert counts.ending_within == {7: 1, 30: 2}  # Litware; Litware and Northwind
    assert counts.inventories_failing == 0 and counts.inventories_never_read == 0


def test_the_warnings_link_opens_the_dashboard_that_lists_the_relationship(
    read, django_capture_on_commit_callbacks
) -> None:
    """The e-mail's link, followed: signed out it asks for the sign-in; signed in, the dashboard
    shows the relationship the e-mail is about, with its end."""
    _sweep(django_capture_on_commit_callbacks)
    northwind = next(m for m in mail.outbox if "Northwind" in m.subject)
    (link,) = [word for word in northwind.body.split() if "/dashboard/" in word]
    path = urlsplit(link).path
    assert Client().get(path)["Location"].endswith("/dashboard/signin/")
    member = member_make(
        partner=read.partner, upn=demo.ADMIN_AGENT, role=AgentRole.ADMIN_AGENT, object_id=demo.CONTOSO
    )
    page = dashboard_login(Client(), member).get(path)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Northwind Traders" in body and "in 24 days" in body

"""E-mail a partner about GDAP relationships ending soon: active, not auto-extended, ending within
one of GDAP_WARNING_DAYS (30 and 7 by default). Once per (relationship, threshold, end date): the
RelationshipWarning row is written in the same transaction as the e-mail is queued (it leaves on
commit), and its unique constraint lets only one of two racing sweeps send it. A relationship first
seen inside 7 days gets only the 7-day e-mail; an end date moved later can be warned about again.

Recipients are those of every partner e-mail (tokens.renewal.notifications): the admin agent who consented
to the partner's Graph grant, then the partner's notification contacts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string

from gdap.models import Relationship, RelationshipWarning
from gdap.roles import role_name
from tokens.models import ConsentGrant
from tokens.renewal.notifications import mail_on_commit, partner_recipients


def _threshold(remaining: timedelta) -> int | None:
    """The most urgent warning threshold (in days) the remaining time falls within."""
    within = [days for days in settings.GDAP_WARNING_DAYS if remaining <= timedelta(days=days)]
    return min(within) if within else None


def relationships_ending(*, now: datetime, within_days: int) -> QuerySet[Relationship]:
    """Active, still listed, not auto-extended relationships ending within `within_days`."""
    return Relationship.objects.filter(
        status=Relationship.Status.ACTIVE,
        gone_at=None,
        auto_extends=False,
        ends_at__gt=now,
        ends_at__lte=now + timedelta(days=within_days),
    )


def _dashboard_url() -> str:
    return f"{settings.SITE_URL.rstrip('/')}/dashboard/"


def gdap_warnings_send(*, now: datetime) -> int:
    """Send the warnings due now; returns how many e-mails were queued."""
    horizon = max(settings.GDAP_WARNING_DAYS, default=0)
    sent = 0
    ending = relationships_ending(now=now, within_days=horizon).select_related("partner")
    for relationship in ending:
        assert relationship.ends_at is not None  # the filter says so
        days = _threshold(relationship.ends_at - now)
        if days is None:
            continue
        consenting = (
            ConsentGrant.objects.filter(
                partner=relationship.partner_id, state__in=ConsentGrant.ISSUABLE_STATES
            )
            .order_by("created_at")
            .values_list("consented_by_upn", flat=True)
        )
        recipients = partner_recipients(partner_id=relationship.partner_id, first=list(consenting))
        if not recipients:
            continue
        try:
            with transaction.atomic():
                warning = RelationshipWarning.objects.create(
                    relationship=relationship,
                    days=days,
                    ends_at=relationship.ends_at,
                    recipient=", ".join(recipients)[:2000],
                    sent_at=now,
                )
                context = {
                    "relationship": relationship,
                    "partner": relationship.partner,
                    "customer": relationship.customer_name or relationship.customer_tenant_id,
                    "days_left": relationship.ends_in_days(now),
                    "thresholds": sorted(settings.GDAP_WARNING_DAYS, reverse=True),
                    "roles": [role_name(r) for r in relationship.roles],
                    "dashboard_url": _dashboard_url(),
                }
                subject = render_to_string("gdap/warning_subject.txt", context).strip()
                body = render_to_string("gdap/warning_body.txt", context)
                mail_on_commit(
                    what=f"GDAP warning {warning.pk}", recipients=recipients, subject=subject, body=body
                )
        except IntegrityError:
            continue  # sent before (or by a sweep racing this one)
        sent += 1
    return sent

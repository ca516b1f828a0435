"""Partner e-mails about a grant: at most once per (grant, condition, generation).

The one notification path: the vault calls it whenever a grant moves into needs_renewal, expired
or revoked (whoever moved it: the sweep, the broker, staff, the partner on the dashboard), and the
expiry sweep for each warning threshold of an expiring grant. Recipients: the consenting user
and the partner's notification contacts (edited by admin agents on the dashboard). The GDAP
warnings (gdap.warnings) use the same recipients and the same after-commit delivery, with their own
at-most-once record.

The row is written in the caller's transaction and the e-mail leaves on commit: if the transaction
rolls back, nothing is recorded and nothing is sent; if two workers race, the unique constraint lets
one insert win and only that one sends. The price of at-most-once is that an SMTP failure after the
commit loses that e-mail (it is logged); the grant's state still shows the condition in the dashboard.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from tokens.models import ConsentGrant, Notification, NotificationContact

logger = logging.getLogger(__name__)

NEEDS_RENEWAL = "needs_renewal"
REVOKED = "revoked"
EXPIRED = "expired"


def expiry_condition(days: int) -> str:
    return f"expires_in_{days}_days"


def grant_renew_url(*, grant: ConsentGrant) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/dashboard/grants/{grant.pk}/renew/"


def notification_recipients(*, grant: ConsentGrant) -> list[str]:
    """The consenting user first, then the partner's contacts, each address once."""
    return partner_recipients(partner_id=grant.partner_id, first=[grant.consented_by_upn])


def partner_recipients(*, partner_id: uuid.UUID, first: list[str]) -> list[str]:
    """The addresses in `first`, then the partner's notification contacts, each address once."""
    contacts = NotificationContact.objects.filter(partner_id=partner_id).values_list("email", flat=True)
    found: dict[str, str] = {}
    for address in [*first, *contacts]:
        found.setdefault(address.lower(), address)
    return list(found.values())


def notification_send_once(*, grant: ConsentGrant, condition: str) -> bool:
    """Record and (on commit) e-mail one notification; False if it was already sent."""
    recipients = notification_recipients(grant=grant)
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                grant=grant,
                condition=condition,
                generation=grant.generation,
                recipient=", ".join(recipients)[:2000],
            )
    except IntegrityError:
        return False
    context = {
        "grant": grant,
        "condition": condition,
        "renew_url": grant_renew_url(grant=grant),
        "application": grant.application,
        "partner": grant.partner,
    }
    subject = render_to_string("tokens/notification_subject.txt", context).strip()
    body = render_to_string("tokens/notification_body.txt", context)
    mail_on_commit(what=f"notification {notification.pk}", recipients=recipients, subject=subject, body=body)
    return True


def mail_on_commit(*, what: str, recipients: list[str], subject: str, body: str) -> None:
    """Send the e-mail once the caller's transaction commits (nothing if it rolls back). `what`
    names the record it belongs to in the log line of a failed send."""
    transaction.on_commit(lambda: _mail(what, recipients, subject, body))


def _mail(what: str, recipients: list[str], subject: str, body: str) -> None:
    try:
        send_mail(
            subject=subject, message=body, from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=recipients
        )
    except OSError:
        logger.exception("%s could not be sent", what)

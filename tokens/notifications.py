"""Partner e-mails about a grant: at most once per (grant, condition, generation).

The row is written in the caller's transaction and the e-mail leaves on commit: if the transaction
rolls back, nothing is recorded and nothing is sent; if two workers race, the unique constraint lets
one insert win and only that one sends. The price of at-most-once is that an SMTP failure after the
commit loses that e-mail (it is logged); the grant's state still shows the condition in the dashboard.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from tokens.models import ConsentGrant, Notification

logger = logging.getLogger(__name__)

NEEDS_RENEWAL = "needs_renewal"


def expiry_condition(days: int) -> str:
    return f"expires_in_{days}_days"


def grant_renew_url(*, grant: ConsentGrant) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/dashboard/grants/{grant.pk}/renew/"


def notification_send_once(*, grant: ConsentGrant, condition: str) -> bool:
    """Record and (on commit) e-mail one notification; False if it was already sent."""
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                grant=grant,
                condition=condition,
                generation=grant.generation,
                recipient=grant.consented_by_upn,
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
    transaction.on_commit(lambda: _mail(notification, subject, body))
    return True


def _mail(notification: Notification, subject: str, body: str) -> None:
    try:
        send_mail(
            subject=subject,
            message=body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[notification.recipient],
        )
    except OSError:
        logger.exception("notification %s could not be sent", notification.pk)

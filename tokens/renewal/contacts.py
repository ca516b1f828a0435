"""A partner's notification contacts: who besides the consenting user receives its grant e-mails.
Edited by admin agents on the dashboard; every change is audited."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction

from partners.models import Partner
from tokens.audit import Actor, audit_record
from tokens.models import AuditEvent, NotificationContact

MAX_CONTACTS = 20


class ContactRefused(ValueError):
    """The address is invalid, already listed, or the list is full. The message is safe to show."""


def _email_clean(email: str) -> str:
    cleaned = (email or "").strip()
    if not cleaned:
        raise ContactRefused("Enter an e-mail address.")
    if len(cleaned) > 254:
        raise ContactRefused("The address is longer than 254 characters.")
    try:
        EmailValidator()(cleaned)
    except ValidationError as error:
        raise ContactRefused("Enter a valid e-mail address, such as alerts@contoso.com.") from error
    local, _, domain = cleaned.rpartition("@")
    return f"{local}@{domain.lower()}"  # domains are case-insensitive; local parts may not be


def notification_contact_add(*, partner: Partner, email: str, actor: Actor) -> NotificationContact:
    address = _email_clean(email)
    with transaction.atomic():
        # The partner row lock serializes additions, so the limit holds under concurrent requests.
        Partner.objects.select_for_update().filter(pk=partner.pk).first()
        if NotificationContact.objects.filter(partner=partner).count() >= MAX_CONTACTS:
            raise ContactRefused(f"At most {MAX_CONTACTS} contacts; remove one first.")
        if NotificationContact.objects.filter(partner=partner, email__iexact=address).exists():
            raise ContactRefused(f"{address} is already a contact.")
        try:
            with transaction.atomic():
                contact = NotificationContact.objects.create(
                    partner=partner, email=address, added_by=actor.id
                )
        except IntegrityError as error:
            raise ContactRefused(f"{address} is already a contact.") from error
        audit_record(actor=actor, action=AuditEvent.Action.CONTACT_ADDED, partner=partner, detail=address)
    return contact


def notification_contact_remove(*, partner: Partner, contact_id: int, actor: Actor) -> bool:
    """False when the partner has no such contact (another partner's id included)."""
    with transaction.atomic():
        contact = (
            NotificationContact.objects.select_for_update().filter(partner=partner, pk=contact_id).first()
        )
        if contact is None:
            return False
        contact.delete()
        audit_record(
            actor=actor, action=AuditEvent.Action.CONTACT_REMOVED, partner=partner, detail=contact.email
        )
    return True

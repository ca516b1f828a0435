from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from tokens.models import AuditEvent, KillSwitch

pytestmark = pytest.mark.django_db


def test_engage_and_release_all_applications_is_audited() -> None:
    call_command("kill_switch", "engage", reason="compromise drill")
    assert KillSwitch.objects.get(application=None).engaged is True
    call_command("kill_switch", "release")
    assert KillSwitch.objects.get(application=None).engaged is False
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "detail"))
    assert actions == [
        (AuditEvent.Action.KILL_SWITCH_ENGAGED, "compromise drill"),
        (AuditEvent.Action.KILL_SWITCH_RELEASED, "all applications"),
    ]


def test_an_unknown_application_is_refused_and_changes_nothing() -> None:
    with pytest.raises(CommandError, match="No application"):
        call_command("kill_switch", "engage", "--client-id", "nope")
    assert not KillSwitch.objects.exists()
    assert not AuditEvent.objects.exists()

"""Staff sign-in: one form (username, password, authenticator code), one message for every
failure, a throttle per username and per address (django-axes), the product's name."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.oath import totp

from controlpanel.models import StaffTOTPDevice
from controlpanel.staff_login import SIGN_IN_FAILED

pytestmark = pytest.mark.django_db


def code_for(device: StaffTOTPDevice) -> str:
    device.refresh_from_db()
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


@pytest.fixture
def device(staff_user: User) -> StaffTOTPDevice:
    return StaffTOTPDevice.objects.create(user=staff_user, name="phone", confirmed=True)


def sign_in(client: Client, username: str, password: str, code: str, address: str = "192.0.2.1"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "otp_token": code},
        REMOTE_ADDR=address,
    )


def test_one_submit_with_the_right_password_and_code_signs_in(device: StaffTOTPDevice) -> None:
    client = Client()
    page = client.get("/admin/login/").content.decode()
    assert 'name="otp_token"' in page and "otp_device" not in page  # no device to choose
    response = sign_in(client, "operator", "pw", code_for(device))
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_the_page_uses_plain_labels_and_the_product_name() -> None:
    page = Client().get("/admin/login/").content.decode()
    assert "Authenticator code" in page and "SAM control panel" in page
    assert "Django administration" not in page and "OTP" not in page


def _error_of(response) -> str:
    assert response.status_code in (200, 429)
    errors = response.context["form"].non_field_errors()
    return " ".join(errors)


def test_every_failure_gets_the_same_message(device: StaffTOTPDevice, staff_user: User) -> None:
    User.objects.create_user("clerk", password="clerk-pw")  # not staff
    User.objects.create_superuser("nodevice", password="nodevice-pw")  # staff without authenticator
    right_code = code_for(device)
    attempts = {
        "unknown user": ("nobody", "pw", right_code),
        "wrong password": ("operator", "wrong", right_code),
        "right password, wrong code": ("operator", "pw", "000000"),
        "right password, no code": ("operator", "pw", ""),
        "not staff": ("clerk", "clerk-pw", right_code),
        "no authenticator": ("nodevice", "nodevice-pw", "123456"),
    }
    messages = {}
    for number, (name, (username, password, code)) in enumerate(attempts.items()):
        # A fresh address each time, so that the address throttle does not answer first.
        response = sign_in(Client(), username, password, code, address=f"192.0.2.{10 + number}")
        messages[name] = _error_of(response)
        assert "_auth_user_id" not in response.wsgi_request.session, name
    assert set(messages.values()) == {SIGN_IN_FAILED}, messages


def test_a_username_is_locked_after_five_failures_even_with_the_right_password(
    device: StaffTOTPDevice, settings
) -> None:
    for number in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), "operator", f"guess-{number}", "000000", address=f"198.51.100.{number + 1}")
    locked = sign_in(Client(), "operator", "pw", code_for(device), address="198.51.100.200")
    assert locked.status_code == 429
    assert SIGN_IN_FAILED in locked.content.decode()
    assert "_auth_user_id" not in locked.wsgi_request.session


def test_an_address_is_locked_after_five_failures_whatever_the_username(
    device: StaffTOTPDevice, settings
) -> None:
    for number in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), f"user{number}", "guess", "000000", address="203.0.113.9")
    locked = sign_in(Client(), "operator", "pw", code_for(device), address="203.0.113.9")
    assert locked.status_code == 429 and SIGN_IN_FAILED in locked.content.decode()
    # Another address still signs the same user in.
    assert sign_in(Client(), "operator", "pw", code_for(device), address="203.0.113.10").status_code == 302


def test_wrong_codes_with_the_right_password_count_towards_the_lock(
    device: StaffTOTPDevice, settings
) -> None:
    for number in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), "operator", "pw", "000000", address=f"192.0.2.{100 + number}")
    assert sign_in(Client(), "operator", "pw", code_for(device), address="192.0.2.200").status_code == 429

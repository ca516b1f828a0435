"""Staff sign-in to the admin: username, password and authenticator code in one form.

The user's confirmed authenticator is chosen for them (staff have one). Every failure, whatever
its cause (unknown user, wrong password, no authenticator, wrong or reused code, not staff), gets
the same message, so that the form tells an attacker nothing about which part was right; each one
counts towards django-axes' throttle per username and per address.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.debug import sensitive_variables
from django_otp.admin import OTPAdminSite

from controlpanel.models import StaffTOTPDevice

PRODUCT_NAME = "SAM control panel"
SIGN_IN_FAILED = "Sign-in failed. Check the username, the password and the authenticator code."


class StaffLoginForm(AdminAuthenticationForm):
    otp_token = forms.CharField(
        label="Authenticator code",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "invalid_login": SIGN_IN_FAILED,
        "inactive": SIGN_IN_FAILED,
    }

    @sensitive_variables("password", "token")
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        password = self.cleaned_data.get("password") or ""
        token = self.cleaned_data.get("otp_token") or ""
        # authenticate() sends user_login_failed itself (django-axes counts it) when the password
        # is wrong or the username or address is locked out.
        user = authenticate(self.request, username=username, password=password) if password else None
        device = None
        if user is not None and user.is_active and user.is_staff:
            device = StaffTOTPDevice.objects.filter(user=user, confirmed=True).order_by("created_at").first()
            if device is None or not device.verify_token(token):
                # The password was right but the sign-in fails all the same: count it.
                user_login_failed.send(
                    sender=__name__, credentials={"username": username}, request=self.request
                )
                device = None
        elif user is not None:
            user_login_failed.send(sender=__name__, credentials={"username": username}, request=self.request)
        if user is None or device is None:
            raise ValidationError(SIGN_IN_FAILED, code="invalid_login")
        # django_otp's user_logged_in receiver marks the session verified with this device.
        user.otp_device = device  # type: ignore[attr-defined]
        self.user_cache = user
        return self.cleaned_data


class StaffAdminSite(OTPAdminSite):
    """The admin under the product's name, admitting only users verified with their authenticator."""

    site_header = PRODUCT_NAME
    site_title = PRODUCT_NAME
    index_title = "Staff console"
    login_form = StaffLoginForm
    login_template = "admin/staff_login.html"


def staff_login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """django-axes' answer once a username or address is locked out: the same sign-in page and
    message as any failure (nothing says whether the password was right), with 429."""
    if original_response is None:
        return HttpResponse(SIGN_IN_FAILED, status=429, content_type="text/plain")
    original_response.status_code = 429
    return original_response


def client_address(request: HttpRequest) -> str | None:
    """The address the throttle counts: REMOTE_ADDR, as everywhere in the panel (the TLS proxy in
    front sets it); never a client-supplied X-Forwarded-For."""
    return request.META.get("REMOTE_ADDR")

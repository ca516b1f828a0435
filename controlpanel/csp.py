"""Content-Security-Policy (django-csp) with the identity provider allowed as a form target.

The consent and sign-in forms post here and are redirected to the identity provider; Chromium
applies form-action to that redirect too. The provider's origin is read from the settings on each
response, not frozen into CONTENT_SECURITY_POLICY at import time, so that it always matches the
authority the panel actually redirects to.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


def identity_origin() -> str:
    parts = urlsplit(settings.IDENTITY_AUTHORITY_HOST)
    return f"{parts.scheme}://{parts.netloc}"


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        update = dict(parts.update or {})
        update["form-action"] = [*update.get("form-action", []), identity_origin()]
        parts.update = update
        return parts

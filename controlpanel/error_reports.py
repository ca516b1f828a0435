"""Error reports (Django's technical 500 page with DEBUG on, and the e-mailed/logged reports)
without secrets.

Django's SafeExceptionReporterFilter is inactive while DEBUG is on, the default outside
production, so the technical page would show every local variable of every frame: refresh and
access tokens during a consent, a client secret in MSAL's frames. This filter is always active and,
beyond `sensitive_variables` / `sensitive_post_parameters`, hides any local variable whose name
says it holds a secret, and any such key inside a dict, in every frame (MSAL's too).
"""

from __future__ import annotations

import re
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|ASSERTION|CREDENTIAL|SEED|PRIVATE|VERIFIER|^CODE$",
        flags=re.IGNORECASE,
    )

    def is_active(self, request: HttpRequest | None) -> bool:
        return True

    def get_traceback_frame_variables(self, request: HttpRequest | None, tb_frame: FrameType) -> Any:
        return [
            (name, self.cleanse_setting(name, value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

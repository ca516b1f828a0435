"""Session lifetime: absolute and idle expiry for every session (partner dashboard and staff admin).

Django's SESSION_COOKIE_AGE alone is neither: each save of a modified session pushes the expiry
forward. So the session records when it began and when it was last seen, and is flushed (signed
out) when either limit has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse

STARTED_KEY = "_session_started_at"
SEEN_KEY = "_session_seen_at"
# Writing the last-seen time at most once a minute keeps most requests free of a session write.
SEEN_RESOLUTION_SECONDS = 60


class SessionExpiryMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if not session.is_empty():
            now = time.time()
            started = float(session.get(STARTED_KEY, now))
            seen = float(session.get(SEEN_KEY, now))
            if (
                now - started > settings.SESSION_ABSOLUTE_SECONDS
                or now - seen > settings.SESSION_IDLE_SECONDS
            ):
                session.flush()
                request.user = AnonymousUser()
            else:
                session.setdefault(STARTED_KEY, now)
                if now - seen >= SEEN_RESOLUTION_SECONDS or SEEN_KEY not in session:
                    session[SEEN_KEY] = now
        return self.get_response(request)


def session_restart(request: HttpRequest, **_: object) -> None:
    """At every sign-in (partner, and staff through the user_logged_in signal): a new session key
    (no fixation) and a new absolute-expiry clock."""
    request.session.cycle_key()
    now = time.time()
    request.session[STARTED_KEY] = now
    request.session[SEEN_KEY] = now

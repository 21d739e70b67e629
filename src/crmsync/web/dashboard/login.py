"""Logging in to the dashboard and out of it.

The login form cannot carry a session's CSRF token (there is no session yet), so it carries a
random nonce that is also set as a cookie scoped to ``/login``: a form posted from another site
has no way to know it. Logins are limited per client address in this process
(:class:`~crmsync.web.dashboard.security.LoginLimiter`) and per user in the store
(:func:`crmsync.store.users.log_in` locks a user out after wrong passwords). After logging in,
the ``next`` page is followed only when it is a path of this site. Logging out ends the user's
sessions on every replica (:func:`crmsync.store.users.end_sessions`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crmsync.store import users
from crmsync.web.dashboard.base import DashboardBase, form_text, when
from crmsync.web.dashboard.security import CSRF_FIELD, Session, Sessions

LOGIN_COOKIE = "crmsync_login"


class LoginPages(DashboardBase):
    """``GET /login``, ``POST /login`` and ``POST /logout``."""

    async def login_page(self, request: Request) -> Response:
        nonce = request.cookies.get(LOGIN_COOKIE) or _nonce()
        response = self.render(
            request, "login.html", None, next=_safe_next(request.query_params.get("next")), login_csrf=nonce
        )
        response.set_cookie(
            LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", path="/login"
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form()
        nonce = request.cookies.get(LOGIN_COOKIE)
        target = _safe_next(form_text(form, "next"))
        if not nonce or form_text(form, CSRF_FIELD) != nonce:
            return self.render(
                request,
                "login.html",
                None,
                status=403,
                next=target,
                login_csrf=nonce or _nonce(),
                error="the form expired: try again",
            )
        client = request.client.host if request.client else "?"
        if not self.limiter.allow(client):
            return self.render(
                request,
                "login.html",
                None,
                status=429,
                next=target,
                login_csrf=nonce,
                error="too many attempts: wait a minute",
            )
        name, password = form_text(form, "username") or "", form_text(form, "password") or ""
        result = await self.run(users.log_in, self.rt.store, name, password)
        if result.user is None:
            error = "wrong user name or password"
            if result.locked_until is not None:
                error = f"too many wrong passwords: this user is locked until {when(result.locked_until)}"
            return self.render(
                request, "login.html", None, status=401, next=target, login_csrf=nonce, error=error
            )
        response = RedirectResponse(target, status_code=303)
        self.sessions.issue(response, result.user, secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        await self.run(users.end_sessions, self.rt.store, session.user)
        response = RedirectResponse("/login", status_code=303)
        Sessions.clear(response)
        return response


def _nonce() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never another host) after logging in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target

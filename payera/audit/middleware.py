"""Binds who is acting for the whole request: the signed-in staff user, the client address and
the request id. The API authentication class re-binds with the API key once it knows it."""

from __future__ import annotations

from django.conf import settings

from payera.audit.context import bind_actor, clear_actor


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or, behind `TRUSTED_PROXY_COUNT` proxies, the address
    the outermost trusted proxy saw (counted from the right of X-Forwarded-For, which a client
    can prepend to but not append to)."""
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies > 0:
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if len(hops) >= proxies:
            return _valid_ip(hops[-proxies])
    return _valid_ip(request.META.get("REMOTE_ADDR"))


def _valid_ip(value: str | None) -> str | None:
    import ipaddress

    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return None


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        user_id = user.pk if user is not None and user.is_authenticated else None
        token = bind_actor(
            user_id=user_id, remote_addr=client_ip(request), request_id=getattr(request, "request_id", None)
        )
        try:
            return self.get_response(request)
        finally:
            clear_actor(token)

"""SSRF guard for merchant webhook URLs.

A URL is refused when its host is, or resolves to, an address that is not globally routable:
loopback, private (RFC 1918, ULA, IPv6 site-local), link-local (incl. 169.254.169.254 metadata), shared
(100.64/10), multicast, reserved, unspecified, and the IPv6 forms that embed such an IPv4
(mapped, 6to4, NAT64 well-known). Every address a name resolves to must pass, and the sender then
connects to one of exactly those addresses (no second lookup, so no DNS rebinding between check
and connect), keeping the original Host header and TLS SNI.

The lookup can hang as long as the host's name server likes: `check_url_within` runs it in a
bounded resolver thread and waits a given time at most, for the sender (its deadline) and for
endpoint creation and update (WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS, in the web thread).

`settings.WEBHOOK_ALLOW_PRIVATE_URLS` (the embedded default; forced off in production) lets a
developer receive webhooks on localhost.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from payera.events.errors import WebhookUrlForbiddenError, WebhookUrlInvalidError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
# Cloud metadata services (most are link-local or private already; listed for clarity).
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}
METADATA_HOSTNAMES = {"metadata", "metadata.google.internal", "metadata.goog"}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    scheme: str
    host: str  # lower case, no brackets
    port: int
    path: str  # path + query, at least "/"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def url_for(self, address: IPAddress) -> str:
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def parse_url(url: object) -> ParsedUrl:
    if not isinstance(url, str) or not url.strip():
        raise WebhookUrlInvalidError("url is required.", param="url")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlInvalidError(f"url must be at most {MAX_URL_LENGTH} characters.", param="url")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookUrlInvalidError("url must not contain whitespace.", param="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlInvalidError("url is not a valid URL.", param="url") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlInvalidError("url must start with https:// or http://.", param="url")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlInvalidError("url must not contain credentials.", param="url")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise WebhookUrlInvalidError("url must name a host.", param="url")
    if parts.fragment:
        raise WebhookUrlInvalidError("url must not contain a fragment.", param="url")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return ParsedUrl(
        scheme=parts.scheme, host=host.lower(), port=port or (443 if parts.scheme == "https" else 80), path=path
    )


def is_forbidden_address(address: IPAddress) -> bool:
    if address in METADATA_ADDRESSES:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and is_forbidden_address(embedded):
            return True
        if address.teredo:
            return True
        if address.is_site_local:  # fec0::/10: deprecated, still internal where used, and "global" to ipaddress
            return True
    return (
        not address.is_global
        or address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses of `host` (a separate function so tests can stand in for DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def private_allowed() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_PRIVATE_URLS", False))


def check_url(url: str, *, allow_private: bool | None = None) -> tuple[ParsedUrl, list[IPAddress]]:
    """Validate `url` and resolve it; raise unless every address is allowed.

    Returns the parsed URL and the addresses to connect to (in resolver order).
    """
    parsed = parse_url(url)
    allow = private_allowed() if allow_private is None else allow_private
    if not allow and (
        parsed.host in METADATA_HOSTNAMES or parsed.host == "localhost" or parsed.host.endswith(".localhost")
    ):
        raise WebhookUrlForbiddenError(param="url")
    literal = literal_address(parsed.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = resolve_host(parsed.host, parsed.port)
        except (OSError, UnicodeError, ValueError):
            raise WebhookUrlInvalidError(f"url host '{parsed.host}' does not resolve.", param="url") from None
        if not addresses:
            raise WebhookUrlInvalidError(f"url host '{parsed.host}' does not resolve.", param="url")
    if not allow and any(is_forbidden_address(a) for a in addresses):
        raise WebhookUrlForbiddenError(param="url")
    return parsed, addresses


# Threads resolving webhook hosts at once, in this process (deliveries and endpoint creation or
# update together): a resolver that hangs holds these (each until getaddrinfo gives up), never the
# delivery or web threads. Lookups of one host name hold at most MAX_RESOLVER_THREADS_PER_HOST of
# them, so a name whose DNS server hangs (one merchant's endpoint) cannot take every thread from
# the other hosts; and one merchant's lookups at most MAX_RESOLVER_THREADS_PER_MERCHANT, so neither
# can many names of a zone whose DNS server hangs (a.hung.example, b.hung.example, ...). The
# merchant's share is larger than one host's: one endpoint whose DNS hangs (its lookups started at
# the merchant's event rate) must not stop the merchant's other endpoints (review r17a: with both
# at 4 it did, and its url could not even be changed to a working host meanwhile); and at most half
# of the threads, so one merchant never takes them all from the others.
MAX_RESOLVER_THREADS = 16
MAX_RESOLVER_THREADS_PER_HOST = 4
MAX_RESOLVER_THREADS_PER_MERCHANT = 8
assert MAX_RESOLVER_THREADS_PER_HOST < MAX_RESOLVER_THREADS_PER_MERCHANT <= MAX_RESOLVER_THREADS // 2
_resolving: dict[tuple[str, str], int] = {}  # ("host", name) or ("merchant", id) -> its resolver threads
_resolving_changed = threading.Condition()


class ResolutionTimeout(Exception):
    """The host's own lookup did not answer in time (or its earlier lookups still hang)."""


class MerchantLookupsHang(ResolutionTimeout):
    """The merchant's earlier lookups (of any of its hosts) still hold its share of the threads."""


class ResolverBusy(Exception):
    """No resolver thread came free in time: lookups of other hosts held them all; ours."""


def check_url_within(url: str, seconds: float, *, merchant_id: str | None = None) -> tuple[ParsedUrl, list[IPAddress]]:
    """`check_url` (parse, resolve, check every address), waited for `seconds` at most.

    getaddrinfo can not be interrupted, so it runs in a daemon thread of its own: at the deadline
    the caller gives up (`ResolutionTimeout`) and the thread ends whenever the resolver answers,
    its answer unused. At most MAX_RESOLVER_THREADS such threads run, MAX_RESOLVER_THREADS_PER_HOST
    for one host and MAX_RESOLVER_THREADS_PER_MERCHANT for the `merchant_id` whose URL it is; a
    caller finding none free within its time gives up the same way when its host's lookups hang,
    with `MerchantLookupsHang` when its merchant's lookups of other hosts do, or with `ResolverBusy`
    when the threads are held by other merchants' lookups (not its URL's fault). A URL naming an IP
    address needs no lookup: checked here."""
    try:
        host = parse_url(url).host
    except WebhookUrlInvalidError:
        return check_url(url)  # raises why, before any lookup
    if literal_address(host) is not None:
        return check_url(url)
    ends = time.monotonic() + max(seconds, 0.0)
    own = [(("host", host), MAX_RESOLVER_THREADS_PER_HOST)]
    if merchant_id is not None:
        own.append((("merchant", merchant_id), MAX_RESOLVER_THREADS_PER_MERCHANT))

    def full(kind: str) -> bool:
        return any(_resolving.get(key, 0) >= cap for key, cap in own if key[0] == kind)

    def own_full() -> bool:
        return full("host") or full("merchant")

    def free() -> bool:
        return not own_full() and sum(n for (kind, _), n in _resolving.items() if kind == "host") < MAX_RESOLVER_THREADS

    with _resolving_changed:
        if not _resolving_changed.wait_for(free, timeout=max(seconds, 0.0)):
            if full("host"):
                raise ResolutionTimeout
            if full("merchant"):
                raise MerchantLookupsHang
            raise ResolverBusy
        for key, _ in own:
            _resolving[key] = _resolving.get(key, 0) + 1

    def release() -> None:
        with _resolving_changed:
            for key, _ in own:
                _resolving[key] -= 1
                if not _resolving[key]:
                    del _resolving[key]
            _resolving_changed.notify_all()

    box: dict = {}
    done = threading.Event()

    def resolve() -> None:
        try:
            box["value"] = check_url(url)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        finally:
            release()
            done.set()

    try:
        threading.Thread(target=resolve, name="webhook-resolve", daemon=True).start()
    except BaseException:
        release()
        raise
    if not done.wait(max(ends - time.monotonic(), 0.0)):
        raise ResolutionTimeout
    if "error" in box:
        raise box["error"]
    return box["value"]

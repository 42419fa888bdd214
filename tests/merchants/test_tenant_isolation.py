"""Tenant isolation as a rule of the code: every route under /v1/, found by walking the URLconf.

A route missing from tests/merchants/tenant_routes.py fails here; so does a /v1/ view that does
not inherit MerchantApiView, and any route that shows merchant B's object to merchant A.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from payera.merchants.api.base import MerchantApiView
from tests.conftest import client_for
from tests.merchants.factories import MerchantFactory, make_api_key
from tests.merchants.tenant_routes import TENANT_ROUTES, NotOwned, Owned

API_PREFIX = "v1/"
SKIP_NAMES = {"schema", "docs"}  # the OpenAPI schema and its UI: public, no merchant data
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    route: str
    name: str | None
    params: tuple[str, ...]
    view_class: type | None

    @property
    def methods(self) -> list[str]:
        return [m for m in HTTP_METHODS if self.view_class is not None and hasattr(self.view_class, m)]

    def __str__(self) -> str:
        return f"{self.name or '<unnamed>'} ({self.route})"


def _walk(patterns, prefix: str = "", params: tuple[str, ...] = ()):
    for p in patterns:
        here = prefix + str(p.pattern)
        names = params + tuple(p.pattern.regex.groupindex)
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, here, names)
        elif isinstance(p, URLPattern):
            view_class = getattr(p.callback, "view_class", None) or getattr(p.callback, "cls", None)
            yield Route(route=here.replace("^", "").replace("$", ""), name=p.name, params=names, view_class=view_class)


def v1_routes(urlconf: str | None = None) -> list[Route]:
    return [
        r
        for r in _walk(get_resolver(urlconf).url_patterns)
        if r.route.startswith(API_PREFIX) and r.name not in SKIP_NAMES
    ]


def missing_entries(routes: list[Route]) -> list[Route]:
    return [r for r in routes if r.name is None or r.name not in TENANT_ROUTES]


ROUTES = v1_routes()


def test_every_v1_route_is_named_and_registered_for_the_tenant_test():
    missing = missing_entries(ROUTES)
    assert not missing, (
        "Add these /v1/ routes to TENANT_ROUTES in tests/merchants/tenant_routes.py "
        f"(name them in urls.py if unnamed): {', '.join(map(str, missing))}"
    )
    stale = set(TENANT_ROUTES) - {r.name for r in ROUTES}
    assert not stale, f"TENANT_ROUTES names no longer in the URLconf: {sorted(stale)}"


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_v1_view_is_a_merchant_api_view(route):
    assert route.view_class is not None and issubclass(route.view_class, MerchantApiView), (
        f"{route}: merchant endpoints must subclass payera.merchants.api.base.MerchantApiView"
    )


def _kwargs(route: Route, created) -> dict[str, str]:
    if isinstance(created, dict):
        return created
    assert len(route.params) == 1, f"{route}: return a dict of URL kwargs from its `create`"
    return {route.params[0]: created}


def _two_merchants():
    merchant_a, merchant_b = MerchantFactory(), MerchantFactory()
    return merchant_a, merchant_b, client_for(make_api_key(merchant_a).secret)


def _assert_404(response, what: str) -> None:
    assert response.status_code == 404, f"{what}: {response.status_code} {response.content[:200]!r}"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "resource_missing"), what


def check_object_route(route: Route, entry: Owned) -> None:
    """Merchant A gets 404 for B's object on every method, and 200 on GET of its own."""
    merchant_a, merchant_b, client_a = _two_merchants()
    url_b = reverse(route.name, kwargs=_kwargs(route, entry.create(merchant_b)))
    url_a = reverse(route.name, kwargs=_kwargs(route, entry.create(merchant_a)))
    assert route.methods, f"{route}: no HTTP methods"
    for method in route.methods:
        call = getattr(client_a, method)
        response = call(url_b) if method == "get" else call(url_b, entry.post_body, format="json")
        _assert_404(response, f"{method.upper()} {url_b} as another merchant")
    if "get" in route.methods:
        assert client_a.get(url_a).status_code == 200, f"GET {url_a}: the owner must see its own object"


def check_list_route(route: Route, entry: Owned) -> None:
    """A's list shows A's object and never B's; B's id is no cursor for A."""
    merchant_a, merchant_b, client_a = _two_merchants()
    own_id = entry.create(merchant_a)
    other_id = entry.create(merchant_b)
    url = reverse(route.name)
    response = client_a.get(url, {"limit": 100})
    assert response.status_code == 200, f"GET {url}: {response.status_code}"
    body = response.json()
    assert body["object"] == "list"
    ids = [obj["id"] for obj in body["data"]]
    assert own_id in ids, f"{url}: the owner's object is missing from its list"
    assert other_id not in ids, f"{url}: shows another merchant's object"
    cursor = client_a.get(url, {"starting_after": other_id})
    assert cursor.status_code == 400, f"{url}: another merchant's id must not work as a cursor"


def check_references(route: Route, entry: Owned, registry) -> None:
    """A request naming B's object in its body is 404 for A."""
    for ref in entry.references:
        target = registry[ref.target]
        assert isinstance(target, Owned), f"{route}: reference target {ref.target} must be Owned"
        merchant_a, merchant_b, client_a = _two_merchants()
        foreign = target.create(merchant_b)
        foreign_id = foreign if isinstance(foreign, str) else next(iter(foreign.values()))
        kwargs = _kwargs(route, entry.create(merchant_a)) if route.params else {}
        url = reverse(route.name, kwargs=kwargs)
        response = getattr(client_a, ref.method)(url, ref.body(foreign_id), format="json")
        _assert_404(response, f"{ref.method.upper()} {url} naming another merchant's {ref.target}")


def _entry(route: Route) -> Owned | None:
    entry = TENANT_ROUTES.get(route.name)
    if entry is None:
        pytest.fail(f"{route} has no entry in tests/merchants/tenant_routes.py")
    if isinstance(entry, NotOwned):
        pytest.skip(entry.reason)
    return entry


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in ROUTES if r.params], ids=str)
def test_another_merchants_object_answers_404(route):
    check_object_route(route, _entry(route))


@pytest.mark.django_db
@pytest.mark.parametrize("route", [r for r in ROUTES if not r.params and "get" in r.methods], ids=str)
def test_lists_never_show_another_merchants_objects(route):
    check_list_route(route, _entry(route))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "route",
    [r for r in ROUTES if isinstance(TENANT_ROUTES.get(r.name), Owned) and TENANT_ROUTES[r.name].references],
    ids=str,
)
def test_naming_another_merchants_object_in_a_body_answers_404(route):
    check_references(route, _entry(route), TENANT_ROUTES)

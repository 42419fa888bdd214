import ipaddress

import pytest

from payera.events import ssrf
from payera.events.errors import WebhookUrlForbiddenError, WebhookUrlInvalidError
from payera.events.services import webhook_endpoint_create

FORBIDDEN = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "https://10.0.0.5/hook",
    "https://172.16.3.4/hook",
    "https://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/hook",
    "http://100.100.100.200/hook",
    "http://0.0.0.0/hook",
    "http://localhost:8000/hook",
    "http://metadata.google.internal/computeMetadata/v1/",
]


@pytest.fixture
def fake_dns(monkeypatch):
    table = {
        "merchant.example": ["93.184.215.14"],
        "sneaky.example": ["93.184.215.14", "127.0.0.1"],  # one bad answer is enough to refuse
        "rebind.example": ["10.1.2.3"],
        "loopback6.example": ["::1"],
    }

    def resolve(host, port):
        if host not in table:
            raise OSError("no such host")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(ssrf, "resolve_host", resolve)
    return table


@pytest.mark.parametrize("url", FORBIDDEN)
def test_private_loopback_link_local_and_metadata_are_refused(url, settings, fake_dns):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(WebhookUrlForbiddenError) as exc:
        ssrf.check_url(url)
    assert exc.value.param == "url"


@pytest.mark.parametrize("host", ["sneaky.example", "rebind.example", "loopback6.example"])
def test_names_resolving_to_private_addresses_are_refused(host, settings, fake_dns):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(WebhookUrlForbiddenError):
        ssrf.check_url(f"https://{host}/hook")


@pytest.mark.parametrize("url", FORBIDDEN[:12] + ["https://rebind.example/x"])
def test_private_addresses_are_allowed_when_the_setting_allows(url, settings, fake_dns):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    parsed, addresses = ssrf.check_url(url)
    assert addresses


def test_public_name_passes_and_is_pinned_to_its_address(settings, fake_dns):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    parsed, addresses = ssrf.check_url("https://merchant.example:8443/hooks?x=1")
    assert [str(a) for a in addresses] == ["93.184.215.14"]
    assert parsed.url_for(addresses[0]) == "https://93.184.215.14:8443/hooks?x=1"
    assert parsed.host_header == "merchant.example:8443"


@pytest.mark.parametrize(
    "url",
    ["", "ftp://merchant.example/x", "https://user:pw@merchant.example/", "https:///nohost", "https://nx.example/",
     "https://merchant.example/a b", "https://merchant.example:99999/"],
)  # fmt: skip
def test_malformed_urls_are_invalid(url, fake_dns):
    with pytest.raises(WebhookUrlInvalidError) as exc:
        ssrf.check_url(url)
    assert exc.value.param == "url"


@pytest.mark.django_db
def test_endpoint_creation_refuses_private_urls_when_disallowed(settings, fake_dns):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(WebhookUrlForbiddenError):
        webhook_endpoint_create(merchant_id="mer_1", url="http://127.0.0.1:9000/x", enabled_events=["*"])
    created = webhook_endpoint_create(merchant_id="mer_1", url="https://merchant.example/x", enabled_events=["*"])
    assert created.endpoint.url == "https://merchant.example/x"


@pytest.mark.parametrize("url", ["http://[fec0::1]/hook", "http://[fec0:0:0:1::5]:8080/hook", "https://[feff::1]/"])
def test_ipv6_site_local_addresses_are_refused(url, settings, fake_dns):
    """fec0::/10 (IPv6 site-local, deprecated by RFC 3879 but still routed inside some networks,
    the IPv6 twin of RFC 1918) counted as global for Python 3.11's `ipaddress`, so a webhook URL on
    such an address passed the SSRF guard and was sent to. Now it is refused as a private address."""
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False
    with pytest.raises(WebhookUrlForbiddenError):
        ssrf.check_url(url)

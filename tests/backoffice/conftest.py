import pytest

from payera.staff.access import staff_grant_merchant
from tests.backoffice.staff import make_staff


@pytest.fixture(autouse=True)
def _local_secrets_and_no_broker(settings, monkeypatch):
    settings.SECRETS_BACKEND = "local"  # webhook secrets encrypted for real, keys in the test database
    published: list = []
    monkeypatch.setattr("payera.events.dispatch.enqueue", lambda task, *args, countdown=None: published.append(
        (task.name, args)) or True)
    return published


@pytest.fixture(autouse=True)
def _circuits_closed():
    """Alpha's soft declines count as technical failures: other tests must not find its circuit open."""
    from payments.circuit import circuit_reset

    circuit_reset(["alpha", "beta"])
    yield
    circuit_reset(["alpha", "beta"])


@pytest.fixture
def superuser(db):
    return make_staff("root", superuser=True)


@pytest.fixture
def world(db):
    """Merchants A and B, each with a key, an endpoint and a dead-lettered delivery."""
    from tests.backoffice.fixtures import merchant_world

    return {"A": merchant_world("Merchant A"), "B": merchant_world("Merchant B")}


@pytest.fixture
def role_users(world):
    """One staff member per role; support, operations and finance limited to merchant A, admin
    (staff.access_all_merchants) sees every merchant."""
    users = {role: make_staff(f"{role}-user", role=role) for role in ("support", "operations", "finance", "admin")}
    for role in ("support", "operations", "finance"):
        staff_grant_merchant(user=users[role], merchant_id=world["A"].merchant.pk)
    return users


@pytest.fixture
def four_eyes_merchant(psp_settings, world):
    """Merchant A, paying through alpha (the sandbox PSP, over HTTP), whose staff refunds above
    20.00 EUR wait for a second finance user (four eyes)."""
    merchant = world["A"].merchant
    merchant.refund_approval_threshold = 2_000  # 20.00 EUR
    merchant.connectors = ["alpha"]
    merchant.save(update_fields=["refund_approval_threshold", "connectors"])
    return merchant


@pytest.fixture
def payment(four_eyes_merchant):
    """A captured payment of 100.00 EUR of `four_eyes_merchant`, at alpha."""
    from tests.backoffice.payments import APPROVED, pay

    return pay(four_eyes_merchant, amount=10_000, number=APPROVED, connectors=["alpha"])


@pytest.fixture
def finance2(world):
    """A second finance user of merchant A: the four eyes' other pair."""
    user = make_staff("finance-two", role="finance")
    staff_grant_merchant(user=user, merchant_id=world["A"].merchant.pk)
    return user

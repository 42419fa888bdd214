"""Detaching a saved SEPA method destroys its IBAN for good, as a saved card's number is.

What was wrong: a saved card's number is encrypted under a key of its own (`pan-<uuid>`) that
the detach destroys in the secrets backend (crypto-shred), so no copy of its ciphertext (a
database backup, a replica, a dump taken for support) can be read again. A saved IBAN was
encrypted under the one shared key `payments-iban`: the detach blanked the column, but every copy
of the ciphertext stayed readable with a key that lives on for all other IBANs. A merchant
detaching a customer's bank account (the debtor revoked the mandate, or asked to be forgotten)
was told the method was detached "for good" while its IBAN survived in every backup. Now a
saved SEPA method gets its own key too, destroyed by the detach; a debit of it still reads the
IBAN (the off-session path), and an IBAN used once stays under the shared key."""

from __future__ import annotations

import pytest

from payera.secrets.services import CiphertextInvalidError, decrypt
from payments.method_types import IBAN_KEY
from payments.models import Payment, PaymentMethod
from tests.scenarios.test_apm import GOOD, create, sepa
from tests.scenarios.test_sepa_mandate_checks import saved_sepa

pytestmark = [pytest.mark.scenario]


def test_detaching_a_saved_sepa_method_crypto_shreds_its_iban(env):
    cus, pm = saved_sepa(env, "shred-iban@example.com")
    before = PaymentMethod.objects.get(pk=pm)
    assert before.pan_key, "a saved IBAN has a key of its own"
    assert decrypt(key=before.pan_key, ciphertext=before.iban_ciphertext).decode() == GOOD
    later = create(env, None, amount=900, customer=cus, payment_method=pm, off_session=True)  # still debited
    env.wait(later["id"], lambda p: p["status"] == "succeeded")
    env.post(f"/v1/payment_methods/{pm}/detach")
    assert PaymentMethod.objects.get(pk=pm).iban_ciphertext == ""
    with pytest.raises(CiphertextInvalidError):  # the key is gone: no copy of the ciphertext can be read
        decrypt(key=before.pan_key, ciphertext=before.iban_ciphertext)


def test_an_iban_used_once_stays_under_the_shared_key(env):
    once = create(env, sepa())
    row = PaymentMethod.objects.get(pk=Payment.objects.get(pk=once["id"]).payment_method_id)
    assert row.pan_key == "" and decrypt(key=IBAN_KEY, ciphertext=row.iban_ciphertext).decode() == GOOD

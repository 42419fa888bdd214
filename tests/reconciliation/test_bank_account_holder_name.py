"""The bank account holder name is one line of printable text.

What was wrong (session 16, w16c): `payout_settings_update` (and `payout_settings
--bank-account-stdin`) stored any holder name, control characters and line breaks included
("Shop GmbH\\r\\nX", a NUL, a tab, a bidi override). The bank file's CSV quotes a newline, but a
bank's strict parser may read it as the end of the row (a broken or shifted transfer line), and the
other characters are refused or misread. The name is now checked where it is set (a clear
`bank_account_holder` error, nothing stored), and a name stored before the check is exported with
those characters made spaces (a name of nothing else is "no holder name": the file is refused).
Each test fails on main.
"""

from __future__ import annotations

import csv
import io
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from payera.secrets import services as secrets
from payera.staff.access import staff_grant_merchant
from reconciliation.errors import BankAccountInvalidError
from reconciliation.models import MerchantPayoutSettings
from reconciliation.services import payout_bank_account_reveal, payout_bank_file_export, payout_settings_update
from reconciliation.services.payouts import BANK_ACCOUNT_KEY
from tests.backoffice.staff import make_staff
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, make_payout

pytestmark = pytest.mark.django_db

BAD = [
    "Shop GmbH\nIBAN DE00",
    "Shop\r\nGmbH",
    "Shop\x00GmbH",
    "Shop\tGmbH",
    "Shop\u202eHbmG",
    "Shop\u2028GmbH",
    "\x1b[2J",
]


@pytest.mark.parametrize("holder", BAD)
def test_a_holder_name_with_control_characters_or_line_breaks_is_refused_and_nothing_stored(holder):
    merchant = MerchantFactory()
    payout_settings_update(merchant_id=merchant.id, bank_account=BANK_ACCOUNT, bank_account_holder="Shop GmbH")
    with pytest.raises(BankAccountInvalidError) as caught:
        payout_settings_update(
            merchant_id=merchant.id, bank_account="FR7630006000011234567890189", bank_account_holder=holder
        )
    assert caught.value.param == "bank_account_holder" and "holder" in caught.value.message
    assert payout_bank_account_reveal(merchant_id=merchant.id) == {"account": BANK_ACCOUNT, "holder": "Shop GmbH"}


def test_a_plain_holder_name_is_kept_trimmed_accents_and_punctuation_included():
    merchant = MerchantFactory()
    payout_settings_update(
        merchant_id=merchant.id, bank_account=BANK_ACCOUNT, bank_account_holder="  Café Müller & Söhne, S.A.  "
    )
    assert payout_bank_account_reveal(merchant_id=merchant.id)["holder"] == "Café Müller & Söhne, S.A."


def test_the_command_refuses_a_holder_name_with_a_control_character(monkeypatch):
    merchant = MerchantFactory()
    monkeypatch.setattr("sys.stdin", StringIO(f"{BANK_ACCOUNT},Shop\x07GmbH\n"))
    with pytest.raises(CommandError, match="holder"):
        call_command("payout_settings", merchant.id, "--bank-account-stdin", stdout=StringIO())
    assert not MerchantPayoutSettings.objects.filter(pk=merchant.id).exclude(bank_account_ciphertext="").exists()


def _store_unchecked(merchant_id: str, holder: str) -> None:
    """A name stored before the check (written the way the service stored it then)."""
    plaintext = json.dumps({"account": BANK_ACCOUNT, "holder": holder}).encode()
    ciphertext = secrets.encrypt(key=BANK_ACCOUNT_KEY, plaintext=plaintext)
    MerchantPayoutSettings.objects.filter(pk=merchant_id).update(bank_account_ciphertext=ciphertext)


def _finance(merchant):
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)
    return user


def test_a_name_stored_before_the_check_is_exported_on_one_line_without_control_characters():
    merchant = MerchantFactory()
    payout = make_payout(merchant)
    _store_unchecked(merchant.id, "Shop GmbH\r\n\x00Berlin\u202e")
    content = payout_bank_file_export(user=_finance(merchant), payout_ids=[payout.id], reason="batch").content
    assert content.count("\n") == 2 and "\r" not in content and "\x00" not in content and "\u202e" not in content
    [row] = csv.DictReader(io.StringIO(content))
    assert row["beneficiary_name"] == "Shop GmbH Berlin"


def test_a_stored_name_of_control_characters_only_is_no_holder_name():
    merchant = MerchantFactory()
    payout = make_payout(merchant)
    _store_unchecked(merchant.id, "\r\n\x00")
    with pytest.raises(BankAccountInvalidError, match="holder"):
        payout_bank_file_export(user=_finance(merchant), payout_ids=[payout.id], reason="batch")

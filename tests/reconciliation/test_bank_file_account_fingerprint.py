"""The bank file sends a payout only to the account it was created for, told apart by the
account's keyed fingerprint, not by its masked form.

What was wrong (review 13a): the bank file's "account changed since the payout was created" guard
compared only the masked forms (`DE89…3000`: country, check digits and last four). Another account
with the same first four and last four characters passed, and the payout created for the old
account was sent to the new one (docs/settlement.md: such a file is "refused whole").
"""

from __future__ import annotations

import csv
import io

import pytest

from payera.backoffice.models import StaffAction
from payera.staff.access import staff_grant_merchant
from reconciliation.errors import BankAccountInvalidError
from reconciliation.models import MerchantPayoutSettings, Payout
from reconciliation.services import payout_bank_file_export, payout_settings_update
from tests.backoffice.staff import make_staff
from tests.merchants.factories import MerchantFactory
from tests.reconciliation.helpers import BANK_ACCOUNT, make_payout

pytestmark = pytest.mark.django_db

OTHER_ACCOUNT = "DE89999999999999993000"  # same masked form as BANK_ACCOUNT, another account


def _finance(merchant):
    user = make_staff("fin", role="finance")
    staff_grant_merchant(user=user, merchant_id=merchant.id)
    return user


def _beneficiary(user, payout) -> str:
    bank_file = payout_bank_file_export(user=user, payout_ids=[payout.id], reason="batch")
    [row] = csv.DictReader(io.StringIO(bank_file.content))
    return row["beneficiary_account"]


def test_a_payout_is_not_sent_to_an_account_set_after_it_was_created_even_with_the_same_mask():
    merchant = MerchantFactory()
    payout = make_payout(merchant)  # created for BANK_ACCOUNT
    assert payout.bank_account_masked == "DE89…3000" and payout.bank_account_fingerprint
    payout_settings_update(merchant_id=merchant.id, bank_account=OTHER_ACCOUNT, bank_account_holder="Shop GmbH")
    user = _finance(merchant)
    with pytest.raises(BankAccountInvalidError, match="changed after payout"):
        payout_bank_file_export(user=user, payout_ids=[payout.id], reason="batch")
    assert not StaffAction.objects.exists()  # refused whole: nothing revealed, nothing recorded

    # the account set back (typed again, spaces and all): the payout goes where it was meant to
    payout_settings_update(
        merchant_id=merchant.id, bank_account="de89 3704 0044 0532 0130 00", bank_account_holder="Shop GmbH"
    )
    assert _beneficiary(user, payout) == BANK_ACCOUNT


def test_a_payout_from_before_fingerprints_is_refused_once_the_account_was_set_again():
    merchant = MerchantFactory()
    payout = make_payout(merchant)
    user = _finance(merchant)
    # as the rows written before the fingerprints: no fingerprint on the payout or the settings
    Payout.objects.filter(pk=payout.id).update(bank_account_fingerprint="")
    MerchantPayoutSettings.objects.filter(merchant_id=merchant.id).update(bank_account_fingerprint="")
    assert _beneficiary(user, payout) == BANK_ACCOUNT  # untouched since: the masked form is all there is

    # set since the payout was created: it may be another account (same mask) and can not be proven
    payout_settings_update(merchant_id=merchant.id, bank_account=OTHER_ACCOUNT, bank_account_holder="Shop GmbH")
    with pytest.raises(BankAccountInvalidError, match="changed after payout"):
        payout_bank_file_export(user=user, payout_ids=[payout.id], reason="batch")

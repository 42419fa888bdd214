"""Decline-code maps as data: each PSP's `codes.py` holds a table `psp code -> (normalized code,
class)`. `decline_for()` looks a code up; an unknown code is a hard `generic_decline` (never
cascade on what we do not understand). `seed_rows()` gives every table as plain rows, to seed
the admin-editable mapping table (payments owns that model; it may override these defaults)."""

from __future__ import annotations

from collections.abc import Mapping

from payera.core.masking import mask_text
from psp_adapters.port import Decline, DeclineClass, DeclineCode

DeclineTable = Mapping[str, tuple[DeclineCode, DeclineClass]]

UNKNOWN = (DeclineCode.GENERIC_DECLINE, DeclineClass.HARD)


def decline_for(table: DeclineTable, psp_code: str | None, message: str = "") -> Decline:
    """The PSP's `message` is kept for the merchant and operations, masked (a PSP may quote the card
    it was sent): it becomes the payment's `last_error.message` and the attempt's decline message."""
    code, cls = table.get(psp_code or "", UNKNOWN)
    return Decline(code=code, decline_class=cls, psp_code=psp_code or "", message=mask_text(message))


def seed_rows() -> list[dict[str, str]]:
    from psp_adapters.alpha.codes import DECLINE_CODES as ALPHA
    from psp_adapters.beta.codes import DECLINE_CODES as BETA

    rows = []
    for psp, table in (("alpha", ALPHA), ("beta", BETA)):
        for psp_code, (code, cls) in table.items():
            rows.append({"psp": psp, "psp_code": psp_code, "code": code.value, "decline_class": cls.value})
    return rows

"""A card number typed into a back-office form (a merchant's name, a group, a staff member's name,
a device's name, a decline code, metadata JSON) is refused with an error naming the field, never
quoting the number, and the page shown back does not hold it; nothing is stored. The rule is the
admin site's: one test walks every field of every form of every registered ModelAdmin."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.test import RequestFactory

from payera.backoffice.card_numbers import holds_card_number
from tests.backoffice.leaks import leaks
from tests.backoffice.staff import make_staff, otp_force_login

pytestmark = pytest.mark.django_db

PAN = "4111111111111111"
# What staff may type into a field, in each shape a field accepts (text, e-mail, URL, JSON, number).
CANDIDATES = (
    "call back about 4111 1111 1111 1111 please",
    PAN,
    f"{PAN}@example.com",
    f"https://example.com/{PAN}",
    f'{{"note": "card {PAN}"}}',
    f'["{PAN}"]',
)


class _FormFields(HTMLParser):
    """The values a browser would post from a page's form: inputs, checked boxes, selects, textareas."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._select = self._textarea = None

    def _add(self, name, value):
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self._add(name, a.get("value") or ("on" if a.get("type") == "checkbox" else ""))
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, [])
        elif tag == "option" and self._select and "selected" in a:
            self._add(self._select, a.get("value", ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self._add(name, "")

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _posted(client, url, **changes):
    """POST the admin form at `url` as the browser shows it, with `changes`."""
    parser = _FormFields()
    parser.feed(client.get(url).content.decode())
    data = {key: values if len(values) > 1 else (values[0] if values else "") for key, values in parser.data.items()}
    data.pop("csrfmiddlewaretoken", None)
    data.update(changes)
    return client.post(url, {k: v for k, v in data.items() if v != []})


def _refused(response, label: str) -> None:
    text = response.content.decode()
    assert response.status_code == 200, response.get("Location")
    assert f"{label} holds a card number" in text
    assert PAN not in text and "4111 1111 1111 1111" not in text and leaks(text) == []


@pytest.fixture
def root(client):
    user = make_staff("root", superuser=True)
    otp_force_login(client, user)
    return user


def test_a_merchant_name_with_a_card_number_is_refused(client, root, world):
    merchant = world["A"].merchant
    url = f"/admin/merchants/merchant/{quote(merchant.pk)}/change/"
    _refused(_posted(client, url, name=f"Shop {PAN}"), "Name")
    merchant.refresh_from_db()
    assert merchant.name == "Merchant A"
    assert _posted(client, url, name="Shop renamed").status_code == 302  # the same form saves without it
    merchant.refresh_from_db()
    assert merchant.name == "Shop renamed"


def test_a_card_number_in_a_merchants_connectors_json_is_refused(client, root, world):
    """A JSON field: a card number in any of its strings (or numbers) is refused."""
    merchant = world["A"].merchant
    before = merchant.connectors
    url = f"/admin/merchants/merchant/{quote(merchant.pk)}/change/"
    _refused(_posted(client, url, connectors=f'["alpha", "note {PAN}"]'), "Connectors")
    _refused(_posted(client, url, connectors=f'["alpha", {{"n": {PAN}}}]'), "Connectors")
    merchant.refresh_from_db()
    assert merchant.connectors == before


def test_a_group_staff_member_and_device_refuse_card_numbers(client, root):
    _refused(client.post("/admin/auth/group/add/", {"name": f"support {PAN}"}), "Name")
    assert not Group.objects.filter(name__contains="4111").exists()

    _refused(_posted(client, f"/admin/auth/user/{root.pk}/change/", first_name="Ann 4111-1111-1111-1111"), "First name")
    root.refresh_from_db()
    assert "4111" not in root.first_name

    device = root.totpdevice_set.get()
    _refused(_posted(client, f"/admin/otp_totp/totpdevice/{device.pk}/change/", name=f"phone {PAN}"), "Name")
    device.refresh_from_db()
    assert "4111" not in device.name


def test_a_decline_code_edited_in_the_list_refuses_a_card_number(client, root):
    from payments.models import DeclineCode

    code = DeclineCode.objects.order_by("pk").first()
    before = code.code
    response = _posted(client, f"/admin/payments/declinecode/?id={code.pk}", **{"form-0-code": PAN, "_save": "Save"})
    assert response.status_code == 200 and "holds a card number" in response.content.decode()
    assert PAN not in response.content.decode()
    code.refresh_from_db()
    assert code.code == before


def _forms_of(model_admin, request):
    """Every form class staff can save through `model_admin`: add, change (of an unsaved row), its
    editable inlines' forms and the list's editable form, with a name for messages."""
    model = model_admin.model
    forms = []
    if model_admin.has_add_permission(request):
        forms.append(("add", model_admin.get_form(request, None, change=False)))
        forms += [("add inline", fs.form) for fs, _ in model_admin.get_formsets_with_inlines(request, None)]
    if model_admin.has_change_permission(request):
        obj = model()
        forms.append(("change", model_admin.get_form(request, obj, change=True)))
        forms += [("change inline", fs.form) for fs, _ in model_admin.get_formsets_with_inlines(request, obj)]
        if model_admin.list_editable:
            forms.append(("list", model_admin.get_changelist_form(request)))
    return forms


def _storable_card_number(field):
    """A value `field` would clean into something holding a card number, or None."""
    if field.disabled:
        return None
    for candidate in CANDIDATES:
        try:
            cleaned = field.clean(candidate)
        except (ValidationError, TypeError, ValueError):
            continue
        if holds_card_number(cleaned):
            return candidate
    return None


def test_every_editable_field_of_every_admin_form_refuses_a_card_number(root):
    request = RequestFactory().get("/admin/")
    request.user = root
    checked, slipped = set(), []
    for model, model_admin in admin.site._registry.items():
        for kind, form_class in _forms_of(model_admin, request):
            for name, field in form_class.base_fields.items():
                value = _storable_card_number(field)
                if value is None:
                    continue
                if field.widget.__class__.__name__ == "PasswordInput":
                    continue  # hashed, never stored or shown
                form = form_class(data={name: value}, instance=model() if kind != "list" else None)
                errors = form.errors.as_data().get(name, [])
                where = f"{model._meta.label} {kind} {name}"
                checked.add(where)
                if "card_number" not in [error.code for error in errors]:
                    slipped.append(where)
                if any(PAN in message for error in errors for message in error.messages):
                    slipped.append(f"{where} (the error quotes it)")
    assert slipped == []
    assert {
        "auth.Group add name",
        "auth.User change first_name",
        "auth.User change email",
        "merchants.Merchant change name",
        "merchants.Merchant change fee_schedule",
        "merchants.Merchant change connectors",
        "otp_totp.TOTPDevice change name",
        "payments.DeclineCode list code",
        "payments.BinRange add issuer",
        "payments.RoutingRule add connector",
    } <= checked, sorted(checked)


def test_a_message_of_django_that_quotes_the_value_is_masked(client, root):
    """ "Select a valid choice. <value> is not one of the available choices." never shows a number."""
    response = client.post("/admin/auth/group/add/", {"name": "support", "permissions": [PAN]})
    text = response.content.decode()
    assert response.status_code == 200 and "is not one of the available choices" in text
    assert PAN not in text and leaks(text) == []

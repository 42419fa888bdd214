"""Card numbers are refused in every form staff can save in the back office (PCI DSS 3: no PAN
stored where none belongs), as a rule of the admin site rather than of each ModelAdmin.

The site registers every admin as a subclass that mixes in `CardNumberRefusingAdminMixin`
(`guarded_admin_class`): its add and change forms, and the forms of its inlines' formsets, refuse a
card number (`payera.core.masking.has_card_number`: a scheme's prefix and length plus Luhn, compact
or split by spaces or dashes, among other text) in any value staff typed: text, e-mail, URL,
JSON (strings, keys and numbers, at any depth) and arrays. The error names the field and never
quotes the value, and the form is shown back with its card numbers masked (its data, and Django's
messages that quote a value). Password fields are
left alone: they are hashed, never stored or shown in clear.

Refused rather than masked, as the merchant API does: staff learn of it and nothing they typed
is changed behind their back. (The action pages' reasons are masked instead: a reason is asked
once and its action runs at once.)
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from payera.core.masking import has_card_number, is_card_number, mask_pans

CARD_NUMBER_REFUSED = (
    "%(field)s holds a card number, which may not be stored here. Remove it (its first 6 and last 4 "
    "digits, as 411111******1111, may stay)."
)


def holds_card_number(value) -> bool:
    """Whether a cleaned form value (text, or a JSON document or list) holds a card number."""
    if isinstance(value, str):
        return has_card_number(value)
    if isinstance(value, dict):
        return any(holds_card_number(k) or holds_card_number(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(holds_card_number(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return is_card_number(str(value))
    return False


def _masked_data(data):
    """The submitted data with its card numbers masked, for showing the form back."""
    if hasattr(data, "lists"):
        masked = data.copy()
        for key, values in data.lists():
            masked.setlist(key, [mask_pans(v) if isinstance(v, str) else v for v in values])
        return masked
    return {key: mask_pans(v) if isinstance(v, str) else v for key, v in data.items()}


class CardNumberRefusingFormMixin:
    """A form that refuses a card number in any value but a password's."""

    def clean(self):
        cleaned = super().clean()
        for name, field in self.fields.items():
            if isinstance(field.widget, forms.PasswordInput) or name not in self.cleaned_data:
                continue
            if holds_card_number(self.cleaned_data[name]):
                label = field.label or name.replace("_", " ").capitalize()
                self.add_error(name, ValidationError(CARD_NUMBER_REFUSED, code="card_number", params={"field": label}))
        return cleaned

    def full_clean(self):
        super().full_clean()
        # A form with errors is shown back with what was typed, and Django's own messages may quote
        # a value ("Select a valid choice. … is not one of the available choices."): never with a
        # card number in it.
        if self.is_bound and self._errors:
            self.data = _masked_data(self.data)
            for errors in self._errors.values():
                for i in range(len(errors)):
                    message = str(errors[i])  # the rendered message of a ValidationError
                    masked = mask_pans(message)
                    if masked != message:
                        errors.data[i] = ValidationError(masked, code=getattr(errors.data[i], "code", None))


def card_number_refusing_form(form_class: type) -> type:
    if issubclass(form_class, CardNumberRefusingFormMixin):
        return form_class
    return type(form_class.__name__, (CardNumberRefusingFormMixin, form_class), {"__module__": form_class.__module__})


class CardNumberRefusingAdminMixin:
    """A ModelAdmin whose forms, and its inlines' forms, refuse card numbers."""

    def get_form(self, request, obj=None, **kwargs):  # UserAdmin's takes no `change`
        return card_number_refusing_form(super().get_form(request, obj, **kwargs))

    def get_changelist_form(self, request, **kwargs):  # list_editable
        return card_number_refusing_form(super().get_changelist_form(request, **kwargs))

    def get_formsets_with_inlines(self, request, obj=None):
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            guarded = card_number_refusing_form(formset.form)
            yield type(formset.__name__, (formset,), {"form": guarded}), inline


def guarded_admin_class(admin_class: type) -> type:
    """`admin_class`, or a subclass of it whose forms refuse card numbers."""
    if issubclass(admin_class, CardNumberRefusingAdminMixin):
        return admin_class
    return type(
        admin_class.__name__,
        (CardNumberRefusingAdminMixin, admin_class),
        {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
    )

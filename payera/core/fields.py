"""Serializer fields of the API's input (CONTRACT "Requests": bodies are JSON)."""

from __future__ import annotations

from rest_framework import serializers


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else. DRF's IntegerField also takes `"1000"`, `"1000.0"` and
    `1000.0`; an amount is a positive integer in minor units (CONTRACT "Requests"), so a string or a
    float is 400 `parameter_invalid` with the field as `param`, as a bool already was."""

    def to_internal_value(self, data):
        if type(data) is not int:  # bool is an int subclass: refused too
            self.fail("invalid")
        return super().to_internal_value(data)

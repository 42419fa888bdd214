"""Public writes of the payments app."""

from payments.services.customers import customer_create

__all__ = ["customer_create"]

"""PSP adapters: one port, one package per provider, and the sandbox PSPs.

Public surface for other apps: `psp_adapters.registry.get_adapter(name)` and the values and
errors of `psp_adapters.port` / `psp_adapters.errors`. See docs/decisions/psp-adapters.md and
docs/sandbox.md. Nothing here imports payments, ledger, reconciliation or django.db.
"""

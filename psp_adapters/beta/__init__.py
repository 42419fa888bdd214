"""The beta PSP: asynchronous API, outcomes by signed webhook (docs/sandbox.md)."""

from psp_adapters.beta.adapter import BetaAdapter

__all__ = ["BetaAdapter"]

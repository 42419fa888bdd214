"""The alpha PSP: synchronous JSON API (docs/sandbox.md)."""

from psp_adapters.alpha.adapter import AlphaAdapter

__all__ = ["AlphaAdapter"]

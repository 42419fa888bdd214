"""Hooks of the sign-in machinery (django-axes settings point here)."""

from __future__ import annotations

from payera.core.masking import mask_text

USERNAME_FIELD = "username"


def axes_username(request, credentials: dict | None = None) -> str | None:
    """The username axes records and locks: as typed, but masked when it holds a card number or a
    key (someone pasting into the wrong field), so the lockout admin never shows one. The same
    callable serves recording and checking, so real usernames lock as they are."""
    if credentials:
        raw = credentials.get(USERNAME_FIELD)
    else:
        raw = getattr(request, "POST", {}).get(USERNAME_FIELD)
    return mask_text(str(raw))[:255] if raw else None

"""Cursor pagination of the contract: `?limit=` (1-100, default 10), `?starting_after=<id>`,
newest first, answered as `{"object": "list", "data": [...], "has_more": bool}`.

Ordering is by (`created`, `id`) descending, so ties on `created` are stable; a cursor is an
object id the caller saw, looked up inside the same (merchant-scoped) queryset, so another
merchant's id is as unknown as a made-up one.

A list a merchant syncs by polling (walk newest first, stop at the newest id it already has) must
never gain a row *below* rows already listed. A row stamped inside its transaction commits later,
so such a list passes `final_before` (`payera.core.horizon.committed_before`, its rows stamped by
`stamp_after_xid`): a first page lists only rows stamped before that instant, after which nothing
can still commit below; a page after a cursor (a row a page listed, so below such an instant)
goes down from the cursor alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db.models import Q, QuerySet

from payera.core.errors import InvalidRequestError

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    # An empty `limit=` is not 1-100 either: 400, as the schema says (found by the fuzzer).
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise InvalidRequestError("limit must be an integer between 1 and 100.", param="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError("limit must be an integer between 1 and 100.", param="limit")
    return limit


def paginate(
    queryset: QuerySet,
    *,
    params,
    render: Callable[[object], dict],
    created_field: str = "created_at",
    final_before: Callable[[], datetime] | None = None,
) -> dict:
    limit = parse_limit(params.get("limit"))
    qs = queryset.order_by(f"-{created_field}", "-pk")
    cursor = params.get("starting_after")
    if cursor:
        anchor = queryset.filter(pk=cursor).values(created_field, "pk").first()
        if anchor is None:
            raise InvalidRequestError(f"No such object for starting_after: '{cursor}'.", param="starting_after")
        at = anchor[created_field]
        qs = qs.filter(Q(**{f"{created_field}__lt": at}) | Q(**{created_field: at, "pk__lt": anchor["pk"]}))
    elif final_before is not None:
        qs = qs.filter(**{f"{created_field}__lt": final_before()})
    rows = list(qs[: limit + 1])
    return {
        "object": "list",
        "data": [render(row) for row in rows[:limit]],
        "has_more": len(rows) > limit,
    }

"""Back-office roles, defined once, as data (docs/roles.md).

A role is a Django group whose permissions are computed from these specs: `app_label.codename`,
where the codename may be a glob (`payments.view_*`), so a model or action permission that a
later app adds lands in the right roles the day that app is migrated. Roles inherit:
support -> operations -> finance -> admin; `everything` takes every permission that exists.

`sync_roles()` makes the groups match exactly (a permission removed here is removed from the
group). It runs from the data migration and after every `migrate` (post_migrate), and as
`manage.py sync_roles`. Give people other permissions through other groups or user grants,
never by editing these groups by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    inherits: str | None = None
    permissions: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    everything: bool = False
    extra: dict = field(default_factory=dict)


# Action permissions follow `<verb>_<model>` in the owning model's Meta.permissions
# (e.g. payments.refund_payment, events.replay_webhookdelivery), so the globs below catch them.
READ_ONLY_FOR_EVERYONE = (
    "ledger.add_*", "ledger.change_*", "ledger.delete_*",
    "events.add_event", "events.change_event", "events.delete_event",
    "audit.add_*", "audit.change_*", "audit.delete_*",
    "backoffice.add_staffaction", "backoffice.change_staffaction", "backoffice.delete_staffaction",
)

ROLES: tuple[Role, ...] = (
    Role(
        "support",
        "Looks up payments, customers, merchants and events to answer merchants. No money actions.",
        permissions=(
            "payments.view_*",
            "payments_backoffice.view_*",
            "events.view_*",
            "merchants.view_merchant",
        ),
    ),
    Role(
        "operations",
        "Support, plus running the system: cancel payments, resolve stuck payments, retry webhooks.",
        inherits="support",
        permissions=(
            "payments.cancel_*",
            "payments.recover_*",
            "payments.resolve_*",
            "payments.add_routingrule", "payments.change_routingrule", "payments.delete_routingrule",
            "payments.add_binrange", "payments.change_binrange", "payments.delete_binrange",
            "events.retry_*",
            "events.replay_*",
            "psp_adapters.view_*",
        ),
    ),
    Role(
        "finance",
        "Operations, plus money: refunds, reconciliation, settlement, payouts, ledger reads.",
        inherits="operations",
        permissions=(
            "payments.refund_*",
            "payments.add_refund",
            "payments.approve_*",
            "payments_backoffice.approve_*",
            "ledger.view_*",
            "reconciliation.*",
        ),
    ),
    Role(
        "admin",
        "Everything, including staff, roles, merchants and API keys; reads the audit trail.",
        inherits="finance",
        everything=True,
    ),
)

ROLE_NAMES = tuple(role.name for role in ROLES)


def _by_name() -> dict[str, Role]:
    return {role.name: role for role in ROLES}


def role_permission_keys(role_name: str, available: set[str]) -> set[str]:
    """The `app_label.codename` keys a role holds, among the `available` ones."""
    role = _by_name()[role_name]
    keys = set(role_permission_keys(role.inherits, available)) if role.inherits else set()
    if role.everything:
        keys |= available
    for spec in role.permissions:
        keys |= {key for key in available if fnmatchcase(key, spec)}
    for spec in (*role.exclude, *READ_ONLY_FOR_EVERYONE):
        keys = {key for key in keys if not fnmatchcase(key, spec)}
    return keys


def unmatched_specs(available: set[str]) -> list[str]:
    """Specs that match no permission yet (their app or model has not landed): for reports."""
    return sorted(
        spec for role in ROLES for spec in role.permissions if not any(fnmatchcase(key, spec) for key in available)
    )


def sync_roles(*, using: str = "default", apps=None) -> dict[str, int]:
    """Create the role groups and set their permissions to exactly what ROLES says.
    Returns {role: number of permissions}. `apps` is a migration's historical registry."""
    if apps is None:
        from django.apps import apps
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    rows = Permission.objects.using(using).values_list("id", "content_type__app_label", "codename")
    ids_by_key = {f"{app_label}.{codename}": pk for pk, app_label, codename in rows}
    available = set(ids_by_key)
    counts = {}
    for role in ROLES:
        wanted = {ids_by_key[key] for key in role_permission_keys(role.name, available)}
        group, _ = Group.objects.using(using).get_or_create(name=role.name)
        current = set(group.permissions.values_list("id", flat=True))
        if current != wanted:
            group.permissions.set(wanted)
        counts[role.name] = len(wanted)
    return counts

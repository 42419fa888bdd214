from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "payera.audit"
    label = "audit"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Audit trail"
    # The runtime database role reads and appends audit records, nothing more (payera/core/db_roles.py);
    # triggers refuse UPDATE, DELETE and TRUNCATE for everyone anyway (migrations 0002, 0005).
    db_runtime_grants = {"audit_auditlogentry": ("SELECT", "INSERT"), "audit_securityevent": ("SELECT", "INSERT")}

    def ready(self) -> None:
        from auditlog.signals import pre_log
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
        from django.db.models.signals import pre_save
        from guardian.models import GroupObjectPermission, UserObjectPermission

        from payera.audit import diff, receivers, registry
        from payera.audit.models import AuditLogEntry

        diff.install()  # auditlog's diff, same result, less work per entry (payera/audit/diff.py)
        pre_log.connect(receivers.remember_object, dispatch_uid="payera_audit_remember_object")
        pre_save.connect(receivers.fill_entry, sender=AuditLogEntry, dispatch_uid="payera_audit_fill_entry")
        user_login_failed.connect(receivers.staff_login_failed, dispatch_uid="payera_audit_login_failed")
        user_logged_in.connect(receivers.staff_logged_in, dispatch_uid="payera_audit_logged_in")
        user_logged_out.connect(receivers.staff_logged_out, dispatch_uid="payera_audit_logged_out")

        # Staff accounts, roles and merchant grants are business records too (PCI DSS 10.2).
        registry.register(get_user_model(), exclude_fields=["last_login"], m2m_fields=["groups", "user_permissions"])
        registry.register(Group, m2m_fields=["permissions"])
        registry.register(UserObjectPermission)
        registry.register(GroupObjectPermission)

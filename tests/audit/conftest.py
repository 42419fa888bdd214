import pytest
from django.contrib.auth import get_user_model

PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff_admin(db):
    return get_user_model().objects.create_superuser("ada", "ada@payera.test", PASSWORD)


@pytest.fixture
def auditor(db):
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("ava", "ava@payera.test", PASSWORD, is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="audit", codename="view_auditlogentry"),
        Permission.objects.get(content_type__app_label="audit", codename="view_securityevent"),
        Permission.objects.get(content_type__app_label="staff", codename="access_all_merchants"),
    )
    return user

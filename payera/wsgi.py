import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payera.settings.base")
application = get_wsgi_application()

from payera.core.startup import refuse_unsafe_runtime  # noqa: E402 - after Django is set up

refuse_unsafe_runtime()  # production: e.g. a superuser or owner database role (docs/deploy.md)

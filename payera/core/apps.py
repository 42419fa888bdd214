from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "payera.core"
    label = "core"

from django.apps import AppConfig


class SipsyncConfig(AppConfig):
    name = "sipsync"
    verbose_name = "SIP service sync"

from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "annotation"
    verbose_name = "Annotation: studies, stimuli, raters, ratings"

    def ready(self) -> None:
        from django.core import checks

        from studyweb import storage

        checks.register(storage.media_store_check, "storage")

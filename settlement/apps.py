from importlib import import_module

from django.apps import AppConfig


class SettlementConfig(AppConfig):
    name = "settlement"
    verbose_name = "Settlement"

    def import_models(self) -> None:
        """This app's models, and its reconciliation wing's (``settlement.reconciliation``),
        which are this app's too and keep its tables; loaded here so that ``settlement.models``
        need not import the wing above it."""
        super().import_models()
        import_module("settlement.reconciliation.models")

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

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .services.house import forget_house_accounts

        # A flush (or a migration) may empty the tables the remembered accounts are in.
        post_migrate.connect(forget_house_accounts, dispatch_uid="settlement-house-accounts")

"""Read-only admin views of the ledger: rows change only through ``ledger.services``."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import Account, Entry, Hold, Transaction


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("code", "ledger", "normal_side", "balance_slots", "created_at")
    list_filter = ("ledger", "normal_side")
    search_fields = ("code", "name")


class EntryInline(admin.TabularInline):
    model = Entry
    extra = 0
    can_delete = False
    readonly_fields = ("account", "amount")


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = ("id", "ledger", "kind", "reference", "created_at")
    list_filter = ("ledger", "kind")
    search_fields = ("reference",)
    inlines = (EntryInline,)


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ("id", "ledger", "amount", "status", "expires_at", "reference")
    list_filter = ("status", "ledger")
    search_fields = ("reference",)

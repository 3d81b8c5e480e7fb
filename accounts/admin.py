"""Read-only admin views: changes go through ``accounts.services`` so they are audited.

Personal data shows only masked; the encrypted columns and lookup hashes are not shown.
"""

from django.contrib import admin

from ledger.admin import ReadOnlyAdmin

from .models import AuditEvent, CreditLine, Department, FamilyLink, Institution, Partner, Person


@admin.register(Person)
class PersonAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "id_number_masked", "birth_date", "sex", "created_at")
    search_fields = ("name",)
    fields = ("name", "id_number_masked", "birth_date", "sex", "user", "created_at")


@admin.register(Institution)
class InstitutionAdmin(ReadOnlyAdmin):
    list_display = ("code", "name", "kind")


@admin.register(Department)
class DepartmentAdmin(ReadOnlyAdmin):
    list_display = ("institution", "code", "name")


@admin.register(Partner)
class PartnerAdmin(ReadOnlyAdmin):
    list_display = ("name", "grace_days", "webhook_url", "created_at")


@admin.register(CreditLine)
class CreditLineAdmin(ReadOnlyAdmin):
    list_display = ("id", "partner", "person", "status", "limit", "expires_on", "opened_at")
    list_filter = ("status", "partner")


@admin.register(FamilyLink)
class FamilyLinkAdmin(ReadOnlyAdmin):
    list_display = ("id", "relation", "payer", "beneficiary", "status", "cap", "created_at")
    list_filter = ("relation", "status")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "object_type", "object_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor")

"""Ledger admin: read-only for everyone (no add, change or delete)."""

from django.contrib import admin

from ledger.models import Account, Entry, Journal


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("account", "currency", "amount", "balance_after", "version", "is_pending")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "code", "currency", "type", "hot", "shard", "balance", "version", "status")
    list_filter = ("type", "currency", "hot", "status")
    search_fields = ("owner", "code")


@admin.register(Journal)
class JournalAdmin(ReadOnlyAdmin):
    list_display = ("id", "reference", "kind", "phase", "occurred_at", "created_at")
    list_filter = ("kind", "phase")
    search_fields = ("reference",)
    inlines = [EntryInline]


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "journal", "account", "currency", "amount", "balance_after", "version")
    list_select_related = ("journal", "account")
    search_fields = ("journal__reference", "account__owner")

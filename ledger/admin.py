"""Ledger admin: read-only for everyone (no add, change or delete), and limited to the staff
member's merchants like every merchant-owned page (payera.staff.admin): a merchant's accounts are
those it owns (`owner` is its id), an entry is its account's, and a journal is seen by who may see
one of the accounts it posts to. Platform accounts (PSP receivables, fees, suspense) are only for
staff who see every merchant."""

from django.contrib import admin
from django.db.models import Exists, OuterRef

from ledger.models import Account, Entry, Journal
from ledger.types import JournalKind
from payera.staff.access import staff_filter_merchants, staff_merchant_ids
from payera.staff.admin import CappedCountPaginator, MerchantScopedAdminMixin


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LargeTableAdmin(ReadOnlyAdmin):
    """Journals and entries grow without end: no exact count of a filtered list (a scoped user's
    `Exists` filter over millions of journals took seconds per count)."""

    paginator = CappedCountPaginator
    show_full_result_count = False


class JournalKindFilter(admin.SimpleListFilter):
    """The kinds the ledger posts, as a fixed list: no `SELECT DISTINCT kind` over every journal."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [(k.value, k.value) for k in JournalKind]

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


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

    def get_queryset(self, request):
        """A journal's legs on the accounts the user may see: a platform account's balance after
        and version are running totals over every merchant (its amount in this journal is the
        merchant's own, but its balance is not)."""
        return staff_filter_merchants(request.user, super().get_queryset(request), field="account__owner")


@admin.register(Account)
class AccountAdmin(MerchantScopedAdminMixin, ReadOnlyAdmin):
    merchant_field = "owner"

    list_display = ("id", "owner", "code", "currency", "type", "hot", "shard", "balance", "version", "status")
    list_filter = ("type", "currency", "hot", "status")
    search_fields = ("owner", "code")


@admin.register(Journal)
class JournalAdmin(MerchantScopedAdminMixin, LargeTableAdmin):
    list_display = ("id", "reference", "kind", "phase", "occurred_at", "created_at")
    list_filter = (JournalKindFilter, "phase")
    search_fields = ("reference",)
    inlines = [EntryInline]

    def get_queryset(self, request):
        qs = super(MerchantScopedAdminMixin, self).get_queryset(request)
        ids = staff_merchant_ids(request.user)
        if ids is None:
            return qs
        return qs.filter(Exists(Entry.objects.filter(journal=OuterRef("pk"), account__owner__in=sorted(ids))))

    def merchant_access_allowed(self, request, obj) -> bool:
        ids = staff_merchant_ids(request.user)
        return ids is None or Entry.objects.filter(journal=obj, account__owner__in=sorted(ids)).exists()


@admin.register(Entry)
class EntryAdmin(MerchantScopedAdminMixin, LargeTableAdmin):
    merchant_field = "account__owner"

    list_display = ("id", "journal", "account", "currency", "amount", "balance_after", "version")
    list_select_related = ("journal", "account")
    search_fields = ("journal__reference", "account__owner")

    def merchant_id_of(self, obj) -> str:
        return obj.account.owner

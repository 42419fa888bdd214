from django.db import migrations, models


def to_each_currency(apps, schema_editor):
    """A merchant's own minimum was one number "in minor units of every currency" (5000: 50.00 EUR,
    but ¥5,000 and 5.000 KWD). It becomes the minimum in the merchant's default currency, the one it
    was set in (5000 for a EUR merchant: {"EUR": 5000}); every other currency takes its platform
    default (RECONCILIATION_PAYOUT_MINIMUM) until the merchant names its own."""
    settings_model = apps.get_model("reconciliation", "MerchantPayoutSettings")
    rows = settings_model.objects.filter(minimum_payout_amount__isnull=False).select_related("merchant")
    for row in rows.iterator():
        row.minimum_payout_amounts = {row.merchant.default_currency.upper(): row.minimum_payout_amount}
        row.save(update_fields=["minimum_payout_amounts"])


def to_one_number(apps, schema_editor):
    settings_model = apps.get_model("reconciliation", "MerchantPayoutSettings")
    for row in settings_model.objects.exclude(minimum_payout_amounts={}).select_related("merchant").iterator():
        own = row.minimum_payout_amounts.get(row.merchant.default_currency.upper())
        row.minimum_payout_amount = own if isinstance(own, int) and own >= 1 else None
        row.save(update_fields=["minimum_payout_amount"])


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0015_run_progress_at"),
        ("merchants", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="merchantpayoutsettings",
            name="minimum_payout_amounts",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text='Per currency, in its minor units: no payout below this amount ({"EUR": 5000, "JPY": '
                "8000}). A currency not named: its default (RECONCILIATION_PAYOUT_MINIMUM).",
            ),
        ),
        migrations.RunPython(to_each_currency, to_one_number),
        migrations.RemoveConstraint(
            model_name="merchantpayoutsettings",
            name="payout_settings_minimum_gte_1",
        ),
        migrations.RemoveField(
            model_name="merchantpayoutsettings",
            name="minimum_payout_amount",
        ),
    ]

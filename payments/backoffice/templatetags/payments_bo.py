from django import template

register = template.Library()


@register.filter
def money(amount, currency):
    from payments.admin import money as fmt

    return fmt(amount, currency)

"""Print the payments state machines as Mermaid diagrams, from the django-fsm metadata.

django-fsm-2's own `graph_transitions` needs the graphviz package; this needs nothing:
    manage.py graph_transitions_mermaid > docs/payments-state-machines.md
"""

from django.core.management.base import BaseCommand

from payments.models import Capture, Payment, PaymentAttempt, Refund, Subscription

MODELS = [Payment, PaymentAttempt, Capture, Refund, Subscription]


def mermaid(model) -> str:
    field = model._meta.get_field("status")
    lines = ["```mermaid", "stateDiagram-v2"]
    seen = set()
    for t in sorted(field.get_all_transitions(model), key=lambda t: (str(t.source), t.name)):
        edge = (t.source, t.target, t.name)
        if edge in seen:
            continue
        seen.add(edge)
        source = "[*]" if t.source in ("*", "+") else t.source
        lines.append(f"    {source} --> {t.target}: {t.name}")
    lines.append("```")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Print the payments state machines (Payment, PaymentAttempt, Capture, Refund, Subscription) as Mermaid."

    def handle(self, *args, **opts):
        out = [
            "# Payments state machines",
            "",
            "Generated from the django-fsm transitions by `manage.py graph_transitions_mermaid`; do not edit.",
            "Every transition writes a PaymentEvent row (who, what, when, from, to).",
        ]
        for model in MODELS:
            first = model.status.field.default if hasattr(model.status, "field") else ""
            out += ["", f"## {model.__name__}", "", f"Initial status: `{first}`.", "", mermaid(model)]
        self.stdout.write("\n".join(out) + "\n")

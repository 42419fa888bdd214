"""Routing without I/O: which connectors, in which order, and whether to try the next one.

Inputs are plain values so the rules can be tested exhaustively (tests/payments/test_routing.py):
- the merchant's rules, each naming a connector with conditions (currency, amount range, card
  brand, BIN country, method type), a priority (lower first) and a weight for volume split
  among rules of equal priority;
- what each connector supports (method types, currencies);
- which connectors the circuit breaker holds open (recent technical failures).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class RoutingRule:
    connector: str
    priority: int = 0
    weight: int = 100
    currencies: frozenset[str] | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    brands: frozenset[str] | None = None
    bin_countries: frozenset[str] | None = None
    method_types: frozenset[str] | None = None

    def matches(self, p: RoutingInput) -> bool:
        return (
            (self.currencies is None or p.currency in self.currencies)
            and (self.min_amount is None or p.amount >= self.min_amount)
            and (self.max_amount is None or p.amount <= self.max_amount)
            and (self.brands is None or p.brand in self.brands)
            and (self.bin_countries is None or p.bin_country in self.bin_countries)
            and (self.method_types is None or p.method_type in self.method_types)
        )


@dataclass(frozen=True, slots=True)
class RoutingInput:
    payment_id: str
    amount: int
    currency: str
    method_type: str = "card"
    brand: str | None = None
    bin_country: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectorCapabilities:
    method_types: frozenset[str]
    currencies: frozenset[str] | None = None  # None: any currency

    def supports(self, p: RoutingInput) -> bool:
        return p.method_type in self.method_types and (self.currencies is None or p.currency in self.currencies)


def _weighted_order(rules: list[RoutingRule], seed: str) -> list[RoutingRule]:
    """Order equal-priority rules by weighted random choice without replacement, seeded by the
    payment id: the split follows the weights, and a payment's order is reproducible."""
    remaining = [r for r in rules if r.weight > 0]
    ordered: list[RoutingRule] = []
    round_ = 0
    while remaining:
        digest = hashlib.sha256(f"{seed}:{round_}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(r.weight for r in remaining)
        acc = 0
        for rule in remaining:
            acc += rule.weight
            if point < acc:
                ordered.append(rule)
                remaining.remove(rule)
                break
        round_ += 1
    return ordered


def connector_order(
    *,
    payment: RoutingInput,
    rules: Iterable[RoutingRule],
    capabilities: Mapping[str, ConnectorCapabilities],
    open_circuits: frozenset[str] = frozenset(),
    max_attempts: int = 3,
) -> list[str]:
    """The connectors to try, in order, at most `max_attempts`, each once.

    Connectors that cannot take the payment's method or currency are never offered. Connectors
    whose circuit is open go last rather than vanish: if every healthy one declines softly,
    trying a recovering one beats failing the shopper.
    """
    matching = [r for r in rules if r.matches(payment) and r.connector in capabilities]
    matching = [r for r in matching if capabilities[r.connector].supports(payment)]
    by_priority: dict[int, list[RoutingRule]] = {}
    for rule in matching:
        by_priority.setdefault(rule.priority, []).append(rule)
    order: list[str] = []
    for priority in sorted(by_priority):
        for rule in _weighted_order(by_priority[priority], f"{payment.payment_id}:{priority}"):
            if rule.connector not in order:
                order.append(rule.connector)
    healthy = [c for c in order if c not in open_circuits]
    tripped = [c for c in order if c in open_circuits]
    return (healthy + tripped)[:max_attempts]


class AttemptVerdict(StrEnum):
    SUCCEEDED = "succeeded"  # authorized (or captured): stop, done
    REQUIRES_ACTION = "requires_action"  # the shopper must act (3-D Secure, bank): wait
    PENDING = "pending"  # accepted, outcome later (async PSP): wait for webhook or inquiry
    HARD_DECLINE = "hard_decline"  # the issuer said no for good: stop, failed
    SOFT_DECLINE = "soft_decline"  # try the next connector
    UNAVAILABLE = "unavailable"  # surely not processed (refused, 5xx before processing): next
    UNKNOWN = "unknown"  # may have been processed (timeout): never cascade; recovery decides


def should_cascade(verdict: AttemptVerdict) -> bool:
    """Cascade only when the attempt surely moved no money and another connector may say yes.

    An unknown outcome never cascades: that is how a shopper gets charged twice.
    """
    return verdict in (AttemptVerdict.SOFT_DECLINE, AttemptVerdict.UNAVAILABLE)

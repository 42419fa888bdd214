"""The merchants of the load run: asyncio + httpx, like real merchant servers. Each merchant runs
a few concurrent shoppers; every POST carries an Idempotency-Key and is retried with the same key
on a 5xx, a 409 `idempotency_error` (the first is still running), a timeout or a refused
connection, with backoff, until it gets a final answer (or gives up after `retry_window`)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.payments.__main__ import CARD

CARDS = {
    "ok": CARD["number"],
    "decline": "4000000000000002",
    "soft": "4000000000000119",  # alpha: processing_error (cascade to beta); beta approves
    "3ds": "4000000000003220",
    "slow": "4000000000007726",  # alpha: no answer within the adapter's timeout
}
# (scenario, weight)
SCENARIOS = [
    ("auto", 30), ("auto_refund", 15), ("manual_capture", 15), ("manual_partial_refund", 10),
    ("manual_cancel", 8), ("decline", 8), ("soft", 5), ("3ds_skipped", 5), ("slow", 4),
]  # fmt: skip


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # answered HTTP requests, seconds
    by_op: dict[str, list[float]] = field(default_factory=dict)  # the same, per operation
    errors: Counter = field(default_factory=Counter)  # what made a request be retried
    operations: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)  # final payment statuses seen by the driver
    gave_up: int = 0
    requests: int = 0


@dataclass
class Merchant:
    id: str
    secret: str


class Driver:
    def __init__(self, base: str, merchants: list[Merchant], *, shoppers: int = 3, retry_window: float = 90.0,
                 seed: int | None = None):
        self.base = base
        self.merchants = merchants
        self.shoppers = shoppers
        self.retry_window = retry_window
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.payments: dict[str, dict] = {}  # payment id -> record (keys, intent)
        self.key_answers: dict[str, list[str]] = {}  # idempotency key -> object ids answered
        self.stopping = asyncio.Event()

    def record(self) -> dict:
        return {"payments": self.payments, "key_answers": self.key_answers}

    # --- one request, retried like a merchant would --------------------------------
    async def call(self, client: httpx.AsyncClient, m: Merchant, method: str, path: str, *, body: dict | None = None,
                   key: str | None = None, op: str = "") -> httpx.Response | None:
        headers = {"Authorization": f"Bearer {m.secret}"}
        if key:
            headers["Idempotency-Key"] = key
        deadline = time.monotonic() + self.retry_window
        delay = 0.2
        while True:
            t0 = time.perf_counter()
            try:
                r = await client.request(method, self.base + path, json=body, headers=headers)
                self.stats.requests += 1
                # a 5xx is stored under its key: the replay says it is this key's final answer
                replayed = r.headers.get("Idempotent-Replayed") == "true"
                retry = (r.status_code >= 500 and not replayed) or r.status_code == 429 or (
                    r.status_code == 409 and _error_type(r) == "idempotency_error")
                if not retry:
                    self.stats.latencies.append(time.perf_counter() - t0)
                    self.stats.by_op.setdefault(op, []).append(time.perf_counter() - t0)
                    self.stats.operations[f"{op}:{r.status_code}"] += 1
                    if key and r.status_code < 300:
                        self.key_answers.setdefault(key, []).append(r.json().get("id", ""))
                    return r
                self.stats.errors[f"{op}:http_{r.status_code}:{_error_code(r)}"] += 1
            except httpx.TimeoutException:
                self.stats.errors["timeout"] += 1
            except httpx.TransportError:
                self.stats.errors["connection"] += 1
            if time.monotonic() > deadline:
                self.stats.gave_up += 1
                return None
            await asyncio.sleep(delay * (0.5 + self.rng.random()))
            delay = min(delay * 2, 3.0)

    async def mutate(self, client: httpx.AsyncClient, m: Merchant, pid: str, action: str, body: dict,
                     unaffected, keys: list[str]) -> httpx.Response | None:
        """POST /v1/payments/{pid}/{action}. After a final 5xx or a 409 `payment_in_progress` the
        merchant GETs the payment and, only if the first try had no effect, tries again with a
        new key (docs/api.md: "retry with a new key only if you know the first had no effect")."""
        r = None
        for _ in range(4):
            key = f"load-{uuid.uuid4().hex}"
            keys.append(key)
            r = await self.call(client, m, "POST", f"/v1/payments/{pid}/{action}", body=body, key=key, op=action)
            if r is None or (r.status_code < 500 and _error_code(r) != "payment_in_progress"):
                return r
            await asyncio.sleep(0.5 + self.rng.random())
            g = await self.call(client, m, "GET", f"/v1/payments/{pid}", op="get")
            if g is None or g.status_code != 200 or not unaffected(g.json()):
                return r
            self.stats.errors[f"{action}:new_key"] += 1
        return r

    async def settle(self, client: httpx.AsyncClient, m: Merchant, pay: dict, wait: float = 30.0,
                     pending: tuple[str, ...] = ("processing",)) -> dict:
        """Poll a payment in a `pending` status (beta answers asynchronously) until it moves on."""
        deadline = time.monotonic() + wait
        while pay.get("status") in pending and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            r = await self.call(client, m, "GET", f"/v1/payments/{pay['id']}", op="get")
            if r is None or r.status_code != 200:
                break
            pay = r.json()
        return pay

    # --- shoppers ------------------------------------------------------------------
    async def shopper(self, client: httpx.AsyncClient, m: Merchant) -> None:
        names, weights = zip(*SCENARIOS, strict=True)
        while not self.stopping.is_set():
            scenario = self.rng.choices(names, weights)[0]
            await self.run_scenario(client, m, scenario)

    async def run_scenario(self, client: httpx.AsyncClient, m: Merchant, scenario: str) -> None:
        manual = scenario.startswith("manual")
        card = {"decline": CARDS["decline"], "soft": CARDS["soft"], "3ds_skipped": CARDS["3ds"],
                "slow": CARDS["slow"]}.get(scenario, CARDS["ok"])
        amount = self.rng.randint(100, 50_000)
        key = f"load-{uuid.uuid4().hex}"
        body = {"amount": amount, "currency": "EUR", "capture_method": "manual" if manual else "automatic",
                "payment_method_data": {"type": "card", "card": {**CARD, "number": card}},
                "return_url": "https://shop.example/return", "metadata": {"load_key": key, "scenario": scenario}}
        r = await self.call(client, m, "POST", "/v1/payments", body=body, key=key, op="create")
        if r is None or r.status_code != 201:
            return
        pay = r.json()
        rec = {"merchant": m.id, "scenario": scenario, "create_key": key, "refund_keys": [], "op_keys": [],
               "leave_open": scenario == "3ds_skipped"}
        self.payments[pay["id"]] = rec
        pay = await self.settle(client, m, pay)
        if pay["status"] == "requires_capture" and manual:
            def untouched(p: dict) -> bool:
                return p["status"] == "requires_capture" and p["amount_captured"] == 0

            if scenario == "manual_cancel":
                r = await self.mutate(client, m, pay["id"], "cancel", {}, untouched, rec["op_keys"])
            else:
                cap: dict = {}
                if self.rng.random() < 0.4:
                    cap["amount_to_capture"] = self.rng.randint(1, pay["amount"])
                r = await self.mutate(client, m, pay["id"], "capture", cap, untouched, rec["op_keys"])
            if r is None or r.status_code != 200:
                rec["leave_open"] = True  # the merchant gave up on it: open, but not without reason
                return
            # beta captures and voids asynchronously: the payment moves on when its webhook arrives
            pay = await self.settle(client, m, r.json(), pending=("processing", "requires_capture"))
        elif manual:  # still processing after 30 s: the merchant moves on without capturing
            rec["leave_open"] = True
        self.stats.statuses[pay["status"]] += 1
        if scenario in ("auto_refund", "manual_partial_refund") and pay["status"] == "succeeded":
            left = pay["amount_captured"]
            for _ in range(self.rng.randint(1, 3)):
                if left <= 0 or self.stopping.is_set():
                    break
                part = self.rng.randint(1, left)
                rkey = f"load-{uuid.uuid4().hex}"
                rec["refund_keys"].append(rkey)
                r = await self.call(client, m, "POST", "/v1/refunds", body={"payment": pay["id"], "amount": part},
                                    key=rkey, op="refund")
                if r is None or r.status_code != 201:
                    break
                left -= part

    async def run(self, seconds: float) -> float:
        """Load for `seconds`; returns how long the shoppers took to finish afterwards."""
        limits = httpx.Limits(max_connections=len(self.merchants) * self.shoppers + 4)
        async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=3.0), limits=limits) as client:
            tasks = [asyncio.create_task(self.shopper(client, m)) for m in self.merchants for _ in range(self.shoppers)]
            await asyncio.sleep(seconds)
            self.stopping.set()  # shoppers finish the scenario they are in (retries included)
            stopped = time.monotonic()
            await asyncio.gather(*tasks)
            return time.monotonic() - stopped


def _error_code(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "-"


def _error_type(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return ""

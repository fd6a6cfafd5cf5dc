"""A realistic billing history, made by the real services: the ledger's composition root runs
the commands (purchases, some with quotes, license changes, seat reductions, renewals over
thirteen months), and the invoicer issues the invoices by following the ledger's notification
log exactly as the embedded default does."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from seatledger.config import Settings, load_settings
from seatledger.follower import NotificationLogFollower
from seatledger.metrics import new_registry
from seatledger.persistence import application_env, ensure_postgres_schema
from services.invoicer.application import InvoicerApplication
from services.invoicer.handlers import LedgerEventHandler
from services.ledger.application import OpenCloud
from services.ledger.bootstrap import LedgerComponents, build_ledger
from services.ledger.contract import to_cloud_event
from services.ledger.domain import Actor, ContractTerms, LedgerError

SECRET = "audit-test-secret-0123456789abcdef0123"
START = datetime(2025, 12, 20, 9, 30, tzinfo=UTC)

_ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC")
_CURRENCIES = (("EUR", "19"), ("USD", "0"), ("JPY", "10"), ("KWD", "5"))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class History:
    """The stores of a ledger and an invoicer after a generated history."""

    settings: Settings
    ledger_env: dict[str, str]
    invoicer_env: dict[str, str]
    clouds: list[UUID]
    counts: dict[str, int] = field(default_factory=dict)
    first: datetime = START
    last: datetime = START


def _terms(rng: random.Random, n: int) -> ContractTerms:
    currency, tax = _CURRENCIES[n % len(_CURRENCIES)]
    price = {
        "EUR": Decimal(rng.choice(["31.00", "9.99", "120.50", "0.37"])),
        "USD": Decimal(rng.choice(["12.00", "99.95"])),
        "JPY": Decimal(rng.choice(["1200", "3333"])),
        "KWD": Decimal(rng.choice(["3.125", "10.005"])),
    }[currency]
    return ContractTerms(
        name=f"Customer {n}",
        owner_id=f"owner-{n % 7}",
        billing_email=f"billing{n}@customer.example",
        currency=currency,
        seat_price=price,
        billing_period="annual" if n % 5 == 0 else "monthly",
        term_start=date(2025, 12, 1) + timedelta(days=n * 3 % 45),
        time_zone=_ZONES[n % len(_ZONES)],
        tax_rate=Decimal(tax),
        locale="de" if n % 2 else "en",
    )


def build_history(
    database_url: str,
    data_dir: Path,
    *,
    clouds: int = 24,
    days: int = 395,
    step_days: int = 3,
    seed: int = 8,
    on_step: Callable[[datetime], None] | None = None,
) -> History:
    rng = random.Random(seed)
    settings = load_settings(
        database_url=database_url,
        data_dir=data_dir,
        jwt_secret=SECRET,
        kafka_bootstrap_servers=None,
    )
    clock = Clock(START)
    components: LedgerComponents = build_ledger(
        settings, new_registry("ledger"), clock=clock, scheduler_interval_s=3600
    )
    components.start(scheduler=False)
    service = components.service
    invoicer_env = application_env(database_url, "invoicer", data_dir)
    ensure_postgres_schema(invoicer_env)
    invoicer = InvoicerApplication(invoicer_env, clock=clock)
    follower = _follower(components.app, invoicer)
    counts = dict.fromkeys(
        ("purchases", "quoted", "assigned", "released", "reductions", "refused"), 0
    )
    ids: list[UUID] = []
    users: dict[UUID, list[str]] = {}
    seats: dict[UUID, int] = {}
    try:
        for n in range(clouds):
            actor = Actor("user", "admin-1")
            terms = _terms(rng, n)
            request = OpenCloud(None, terms, rng.randint(1, 5), ("admin", "employee"))
            cloud, _ = service.wait(service.submit_open(request, actor))
            ids.append(cloud.id)
            users[cloud.id] = []
            seats[cloud.id] = cloud.seats
        user_counter = 0
        for step in range(days // step_days):
            clock.now = START + timedelta(days=step * step_days, hours=rng.randint(0, 12))
            futures: list[Future[Any]] = []
            for cloud_id in ids:
                owner = Actor("user", "owner")
                roll = rng.random()
                held = users[cloud_id]
                if roll < 0.10:
                    target = seats[cloud_id] + rng.randint(1, 3)
                    if rng.random() < 0.3:
                        quote = service.quote(cloud_id, target, None)
                        futures.append(
                            service.submit_purchase(cloud_id, target, owner, quote.quote_id)
                        )
                        counts["quoted"] += 1
                    else:
                        futures.append(service.submit_purchase(cloud_id, target, owner))
                    seats[cloud_id] = target
                    counts["purchases"] += 1
                elif roll < 0.55 and len(held) < seats[cloud_id]:
                    user_counter += 1
                    user = f"user-{user_counter}"
                    held.append(user)
                    futures.append(
                        service.submit_assign(
                            cloud_id, user, rng.choice(["admin", "employee"]), owner
                        )
                    )
                    counts["assigned"] += 1
                elif roll < 0.85 and held:
                    user = held.pop(rng.randrange(len(held)))
                    futures.append(service.submit_release(cloud_id, user, owner))
                    counts["released"] += 1
                elif roll < 0.88 and seats[cloud_id] > 1:
                    futures.append(
                        service.submit_reduction(cloud_id, max(1, seats[cloud_id] - 1), owner)
                    )
                    counts["reductions"] += 1
                else:
                    futures.append(service.submit_renewal(cloud_id))
            for future in futures:
                try:
                    service.wait(future)
                except LedgerError:
                    counts["refused"] += 1  # a refused command records nothing
            # Seat counts move with renewals (reductions); read them back.
            for cloud_id in ids:
                current = components.app.find(cloud_id)
                assert current is not None
                seats[cloud_id] = current.seats
                users[cloud_id] = sorted(current.licenses)
            # The invoicer follows a moment later, as in the embedded default.
            clock.now += timedelta(seconds=2)
            follower.catch_up(timeout_s=120)
            if on_step is not None:
                on_step(clock.now)
        last = clock.now
    finally:
        invoicer.close()
        components.close()

    ledger_env = application_env(database_url, "ledger", data_dir)
    return History(settings, ledger_env, invoicer_env, ids, counts, START, last)


def _follower(ledger: Any, invoicer: InvoicerApplication) -> NotificationLogFollower:
    return NotificationLogFollower(
        ledger,
        "ledger",
        to_cloud_event,
        LedgerEventHandler(invoicer),
        invoicer.position,
        on_skipped=lambda position: invoicer.save_tracked(position),
        name="invoicer",
        registry=new_registry("invoicer"),
    )


def issue_invoices(database_url: str, data_dir: Path, *, issued_at: datetime) -> int:
    """Let the invoicer follow the ledger's log (the embedded path) until it has caught up."""
    from services.ledger.application import Ledger

    ledger = Ledger(env=application_env(database_url, "ledger", data_dir))
    invoicer_env = application_env(database_url, "invoicer", data_dir)
    ensure_postgres_schema(invoicer_env)
    invoicer = InvoicerApplication(invoicer_env, clock=lambda: issued_at)
    try:
        return _follower(ledger, invoicer).catch_up(timeout_s=600)
    finally:
        invoicer.close()
        ledger.close()


__all__ = ["History", "build_history", "issue_invoices"]

"""The seat-license story through the HTTP API: the same steps against the embedded default
and against the three separate processes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.e2e.support import Tokens, expected_purchase, term_start_for, wait_for

OWNER = "anna.berger"
BILLING_EMAIL = "rechnung@berger-partner.example"
PRICE = Decimal("12.00")
TAX_RATE = Decimal("19")
STAFF = {
    "anna.berger": "admin",
    "ben.kraus": "employee",
    "carla.roth": "employee",
    "deniz.aydin": "employee",
    "emil.vogt": "employee",
}


@dataclass
class Journey:
    ledger: str
    invoicer: str
    tokens: Tokens

    def __post_init__(self) -> None:
        self.http = httpx.Client(timeout=30)
        self.admin = self.tokens("billing-admin-service", "billing:admin", "billing:audit")
        self.user_admin = self.tokens("user-admin-service", "billing:licenses")
        self.owner = self.tokens(OWNER)
        self.today = datetime.now(ZoneInfo("Europe/Berlin")).date()
        self.term_start = term_start_for(self.today)

    def call(self, method: str, url: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
        return self.http.request(method, url, headers=headers, **kw)

    def ok(self, method: str, url: str, headers: dict[str, str], **kw: Any) -> Any:
        response = self.call(method, url, headers, **kw)
        assert response.status_code < 300, (method, url, response.status_code, response.text)
        return response.json() if response.content else None

    # -- steps ---------------------------------------------------------------------------

    def open_firm(self, seats: int = 5) -> str:
        cloud = self.ok(
            "POST",
            f"{self.ledger}/v1/clouds",
            self.admin,
            json={
                "name": "Berger & Partner",
                "owner_id": OWNER,
                "billing_email": BILLING_EMAIL,
                "currency": "EUR",
                "seat_price": str(PRICE),
                "billing_period": "monthly",
                "term_start": self.term_start.isoformat(),
                "time_zone": "Europe/Berlin",
                "tax_rate": str(TAX_RATE),
                "locale": "de",
                "seats": seats,
            },
        )
        return str(cloud["cloud_id"])

    def assign(self, cloud_id: str, user: str, group: str) -> dict[str, Any]:
        return dict(
            self.ok(
                "POST",
                f"{self.ledger}/v1/clouds/{cloud_id}/licenses",
                self.user_admin,
                json={"user_id": user, "rights_group": group},
            )
        )

    def set_group(
        self, cloud_id: str, user: str, group: str, previous: str | None = None
    ) -> dict[str, Any]:
        body = {"rights_group": group}
        if previous:
            body["previous_rights_group"] = previous
        return dict(
            self.ok(
                "PUT",
                f"{self.ledger}/v1/clouds/{cloud_id}/users/{user}/rights-group",
                self.user_admin,
                json=body,
            )
        )

    def release(self, cloud_id: str, user: str) -> None:
        response = self.call(
            "DELETE", f"{self.ledger}/v1/clouds/{cloud_id}/licenses/{user}", self.user_admin
        )
        assert response.status_code == 204, response.text

    def overview(self) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"{self.ledger}/v1/owners/{OWNER}/clouds", self.owner)["clouds"])

    def quote(self, cloud_id: str, seats: int) -> dict[str, Any]:
        return dict(
            self.ok(
                "POST",
                f"{self.ledger}/v1/clouds/{cloud_id}/seat-quotes",
                self.owner,
                json={"seats": seats},
            )
        )

    def purchase(self, cloud_id: str, seats: int, quote_id: str | None) -> httpx.Response:
        body: dict[str, Any] = {"seats": seats}
        if quote_id:
            body["quote_id"] = quote_id
        return self.call(
            "POST",
            f"{self.ledger}/v1/clouds/{cloud_id}/seat-purchases",
            {**self.tokens(OWNER, step_up=True), "Idempotency-Key": f"buy-{cloud_id}-{seats}"},
            json=body,
        )

    def cloud(self, cloud_id: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"{self.ledger}/v1/clouds/{cloud_id}", self.owner))

    def invoices(self, cloud_id: str) -> list[dict[str, Any]]:
        return list(
            self.ok("GET", f"{self.invoicer}/v1/clouds/{cloud_id}/invoices", self.owner)["invoices"]
        )

    def wait_for_invoices(self, cloud_id: str, count: int) -> list[dict[str, Any]]:
        invoices: list[dict[str, Any]] = wait_for(
            lambda: (found := self.invoices(cloud_id)) and len(found) >= count and found,
            timeout_s=60,
            what=f"{count} invoice(s)",
        )
        return invoices

    # -- the story ------------------------------------------------------------------------

    def before_purchase(self) -> str:
        """The firm's cloud with 5 seats, every license in use; the overview shows it."""
        cloud_id = self.open_firm()
        for user, group in STAFF.items():
            self.assign(cloud_id, user, group)
        firm = next(c for c in self.overview() if c["cloud_id"] == cloud_id)
        assert (firm["seats"], firm["licenses_assigned"], firm["licenses_free"]) == (5, 5, 0)
        return cloud_id

    def buy_three_seats(self, cloud_id: str) -> dict[str, Any]:
        """Preview 5 -> 8, confirm with a fresh password authentication; the quote matches the
        proration rule. Returns the quote."""
        quote = self.quote(cloud_id, 8)
        net, tax, gross, remaining, total = expected_purchase(
            3, PRICE, self.term_start, self.today, TAX_RATE
        )
        assert (quote["days_remaining"], quote["days_in_period"]) == (remaining, total)
        assert (Decimal(quote["net"]), Decimal(quote["tax"]), Decimal(quote["gross"])) == (
            net,
            tax,
            gross,
        )
        refused = self.call(
            "POST",
            f"{self.ledger}/v1/clouds/{cloud_id}/seat-purchases",
            self.owner,
            json={"seats": 8, "quote_id": quote["quote_id"]},
        )
        assert refused.status_code == 401
        assert "insufficient_user_authentication" in refused.headers["www-authenticate"]
        bought = self.purchase(cloud_id, 8, quote["quote_id"])
        assert bought.status_code == 201, bought.text
        assert bought.json()["seats"] == 8
        return quote

    def check_invoice(self, invoice: dict[str, Any], quote: dict[str, Any]) -> None:
        net, tax, gross, remaining, total = expected_purchase(
            3, PRICE, self.term_start, self.today, TAX_RATE
        )
        assert invoice["kind"] == "seat_purchase"
        assert (Decimal(invoice["net"]), Decimal(invoice["tax"]), Decimal(invoice["gross"])) == (
            net,
            tax,
            gross,
        )
        assert invoice["gross"] == quote["gross"]
        (line,) = invoice["lines"]
        assert (line["quantity"], line["remaining_days"], line["period_days"]) == (
            3,
            remaining,
            total,
        )
        assert invoice["customer"]["billing_email"] == BILLING_EMAIL

    def after_purchase(self, cloud_id: str) -> None:
        """New licenses to two new employees and a guest upgraded; one employee to guest;
        logging in or out changes nothing."""
        for user in ("gustav.peters", "hanna.schulz"):
            self.assign(cloud_id, user, "employee")
        upgraded = self.set_group(cloud_id, "frieda.lang", "employee", previous="guest")
        assert (upgraded["holds_license"], upgraded["outcome"]) == (True, "assigned")
        full = self.cloud(cloud_id)
        assert (full["licenses_assigned"], full["licenses_free"]) == (8, 0)
        no_seat = self.call(
            "POST",
            f"{self.ledger}/v1/clouds/{cloud_id}/licenses",
            self.user_admin,
            json={"user_id": "ida.neu", "rights_group": "employee"},
        )
        assert no_seat.status_code == 409
        assert no_seat.headers["content-type"].startswith("application/problem+json")
        moved = self.set_group(cloud_id, "carla.roth", "guest")
        assert (moved["holds_license"], moved["outcome"]) == (False, "released")
        state = self.cloud(cloud_id)
        assert (state["seats"], state["licenses_assigned"], state["licenses_free"]) == (8, 7, 1)
        holders = {h["user_id"]: h["rights_group"] for h in state["licenses"]}
        assert "carla.roth" not in holders
        assert holders["frieda.lang"] == "employee"
        # Logging in or out is not a billing event: reading changes no version.
        assert self.cloud(cloud_id)["version"] == state["version"]

    def history(self, cloud_id: str) -> list[dict[str, Any]]:
        return list(
            self.ok("GET", f"{self.ledger}/v1/clouds/{cloud_id}/events", self.admin)["events"]
        )

    def history_types(self, cloud_id: str) -> list[str]:
        return [str(e["type"]).split(".")[2] for e in self.history(cloud_id)]

    def check_group_moves_in_history(self, cloud_id: str) -> None:
        """What consumers read: the guest upgraded, the employee moved to guest."""
        events = [e["data"] for e in self.history(cloud_id)]
        upgrade = next(e for e in events if e.get("user_id") == "frieda.lang")
        assert (upgrade["previous_rights_group"], upgrade["rights_group"]) == ("guest", "employee")
        release = [e for e in events if e.get("user_id") == "carla.roth"][-1]
        assert (release["previous_rights_group"], release["rights_group"]) == ("employee", "guest")


def today_berlin() -> date:
    return datetime.now(ZoneInfo("Europe/Berlin")).date()

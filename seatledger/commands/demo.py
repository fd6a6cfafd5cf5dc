"""``seatledger demo``: the story of the seat-license help article, told against a fresh data
folder through the real HTTP API of the embedded default.

An owner opens the overview of their clouds; previews raising one cloud from 5 to 8 seats and
sees the prorated amount; confirms with a fresh password authentication; the invoice is issued
and e-mailed; the new free licenses go to two new employees and a guest is upgraded to
employee; one employee is moved to guest and their license is free again; logging in or out
changes nothing. It ends with the cloud's state and its event history.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from seatledger.auth import SCOPE_ADMIN, SCOPE_AUDIT, SCOPE_LICENSES, mint_token
from seatledger.billing import add_months
from seatledger.cli import CommandError
from seatledger.config import Settings, load_settings
from seatledger.logging import configure_logging

OWNER = "anna.berger"
TIME_ZONE = "Europe/Berlin"


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="walk through the seat-license story against a fresh data folder",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        help="a new or empty folder for the demo's data (default: ./var/demo-<time>)",
    )
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir or Path("var") / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if data_dir.exists() and any(data_dir.iterdir()):
        raise CommandError(f"{data_dir} is not empty: the demo needs a fresh data folder")
    try:
        settings = load_settings(data_dir=data_dir, database_url=None, kafka_bootstrap_servers=None)
    except Exception as exc:
        raise CommandError(f"invalid settings: {exc}".splitlines()[0]) from exc
    configure_logging("ERROR", "console")  # the walk-through is the output
    console = Console(highlight=False)
    with EmbeddedServer(settings) as base_url:
        Story(settings, base_url, console).tell()
    return 0


class EmbeddedServer:
    """The embedded default on an ephemeral port of 127.0.0.1, in this process."""

    def __init__(self, settings: Settings) -> None:
        from seatledger.embedded import build_embedded
        from seatledger.serving import server_config

        self.product = build_embedded(settings)
        self.server = uvicorn.Server(server_config(self.product.http_app))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        from seatledger.serving import bound_port

        self.product.start()
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise CommandError("the embedded server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{bound_port(self.server)}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.product.stop()


class Story:
    def __init__(self, settings: Settings, base_url: str, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.admin = self._token("billing-admin-service", SCOPE_ADMIN, SCOPE_AUDIT)
        self.user_admin = self._token("user-admin-service", SCOPE_LICENSES)
        self.owner = self._token(OWNER)
        self.step = 0

    # -- plumbing ------------------------------------------------------------------------

    def _token(self, sub: str, *scopes: str, step_up: bool = False) -> str:
        return mint_token(self.settings, subject=sub, scopes=scopes, step_up=step_up)

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        response = self.call(method, path, token, **kwargs)
        if response.status_code >= 400:
            raise CommandError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def heading(self, text: str) -> None:
        self.step += 1
        self.console.print()
        self.console.rule(f"[bold]{self.step}. {text}", align="left")

    def say(self, text: str) -> None:
        self.console.print(text)

    # -- the story ------------------------------------------------------------------------

    def tell(self) -> None:
        c = self.console
        c.print(
            Panel(
                "Seat licenses: buy more seats during the term, prorated by day, and give "
                "the licenses to named users.\nEverything below goes through the HTTP API of "
                f"the embedded default; its data lives in [bold]{self.settings.data_dir}[/].",
                title="seatledger demo",
            )
        )
        today = datetime.now(ZoneInfo(TIME_ZONE)).date()
        term_start = add_months(today - timedelta(days=12), -3)
        office = self.open_cloud(
            "Berger & Partner Steuerberatung", 5, "monthly", "12.00", "de", term_start
        )
        self.open_cloud("Berger Archiv", 3, "annual", "96.00", "en", term_start)
        staff = {
            "anna.berger": "admin",
            "ben.kraus": "employee",
            "carla.roth": "employee",
            "deniz.aydin": "employee",
            "emil.vogt": "employee",
        }
        for user, group in staff.items():
            self.ok(
                "POST",
                f"/v1/clouds/{office}/licenses",
                self.user_admin,
                json={"user_id": user, "rights_group": group},
            )
        self.say(
            f"The firm's cloud has 5 seats, all 5 licenses in use ({', '.join(staff)}); "
            "frieda.lang works there as a guest, which needs no license."
        )

        self.heading("The owner opens the overview of their clouds")
        self.overview()

        self.heading("Preview: raise the firm's cloud from 5 to 8 seats")
        quote = self.ok("POST", f"/v1/clouds/{office}/seat-quotes", self.owner, json={"seats": 8})
        self.show_quote(quote)

        self.heading("Confirm: a fresh password authentication is required")
        refused = self.call(
            "POST",
            f"/v1/clouds/{office}/seat-purchases",
            self.owner,
            json={"seats": 8, "quote_id": quote["quote_id"]},
        )
        self.say(
            f"Without it the purchase is refused: [bold]{refused.status_code}[/], "
            f"WWW-Authenticate: {refused.headers.get('www-authenticate', '-')}"
        )
        fresh = self._token(OWNER, step_up=True)
        bought = self.ok(
            "POST",
            f"/v1/clouds/{office}/seat-purchases",
            fresh,
            json={"seats": 8, "quote_id": quote["quote_id"]},
            headers={"Idempotency-Key": f"demo-{quote['quote_id']}"},
        )
        self.say(
            f"After re-entering the password: purchase recorded, the cloud has "
            f"[bold]{bought['seats']}[/] seats, {bought['licenses_free']} licenses free."
        )

        self.heading("The invoice is issued and e-mailed")
        invoice = self.wait_for_invoice(office)
        self.show_invoice(invoice)
        if invoice["gross"] != quote["gross"]:
            raise CommandError("the invoice does not match the quote")
        pdf = self.call(
            "GET",
            f"/v1/invoices/{invoice['invoice_id']}",
            self.owner,
            headers={"Accept": "application/pdf"},
        )
        pdf_path = self.settings.data_dir / f"{invoice['invoice_number']}.pdf"
        pdf_path.write_bytes(pdf.content)
        eml = self.wait_for_email(invoice["invoice_id"])
        self.say(f"Invoice equals the quote to the cent. PDF: [bold]{pdf_path}[/]")
        self.say(f"E-mail to the billing address, with the PDF attached: [bold]{eml}[/]")

        self.heading("The new licenses: two new employees, and a guest becomes an employee")
        for user in ("gustav.peters", "hanna.schulz"):
            self.ok(
                "POST",
                f"/v1/clouds/{office}/licenses",
                self.user_admin,
                json={"user_id": user, "rights_group": "employee"},
            )
        self.set_group(office, "frieda.lang", "employee", previous="guest")
        self.licenses(office)

        self.heading("carla.roth moves to the guest group: her license is free again")
        self.set_group(office, "carla.roth", "guest")
        self.licenses(office)

        self.heading("Logging in or out changes nothing")
        before = self.ok("GET", f"/v1/clouds/{office}", self.owner)
        self.say(
            "ben.kraus logs out and in again: sign-ins are not billing events, the ledger is "
            "not told."
        )
        after = self.ok("GET", f"/v1/clouds/{office}", self.owner)
        same = (before["version"], before["licenses_assigned"]) == (
            after["version"],
            after["licenses_assigned"],
        )
        self.say(
            f"Version {after['version']} and {after['licenses_assigned']} licenses before "
            f"and after: {'unchanged' if same else 'CHANGED'}."
        )

        self.heading("The cloud now")
        self.state(office)
        self.heading("Its history: every change is an event")
        self.history(office)
        self.console.print()
        self.say(
            f"Data folder: [bold]{self.settings.data_dir}[/] "
            "(audit it: seatledger audit history/verify/replay)"
        )

    # -- steps --------------------------------------------------------------------------

    def open_cloud(
        self, name: str, seats: int, period: str, price: str, locale: str, term_start: Any
    ) -> str:
        body = {
            "name": name,
            "owner_id": OWNER,
            "billing_email": "rechnung@berger-partner.example",
            "currency": "EUR",
            "seat_price": price,
            "billing_period": period,
            "term_start": term_start.isoformat(),
            "time_zone": TIME_ZONE,
            "tax_rate": "19",
            "locale": locale,
            "seats": seats,
        }
        cloud = self.ok("POST", "/v1/clouds", self.admin, json=body)
        return str(cloud["cloud_id"])

    def set_group(self, cloud_id: str, user: str, group: str, previous: str | None = None) -> None:
        """The user-admin service reports a user's new rights group; the ledger decides."""
        body = {"rights_group": group}
        if previous:
            body["previous_rights_group"] = previous
        self.ok(
            "PUT", f"/v1/clouds/{cloud_id}/users/{user}/rights-group", self.user_admin, json=body
        )

    def overview(self) -> None:
        data = self.ok("GET", f"/v1/owners/{OWNER}/clouds", self.owner)
        table = Table("cloud", "current period", "seats", "licenses used", "free")
        for cloud in data["clouds"]:
            period = cloud.get("current_period") or {}
            table.add_row(
                cloud["name"],
                f"{period.get('start', '')} - {period.get('end', '')}",
                str(cloud["seats"]),
                str(cloud["licenses_assigned"]),
                str(cloud["licenses_free"]),
            )
        self.console.print(table)

    def show_quote(self, quote: dict[str, Any]) -> None:
        table = Table("", "", show_header=False)
        table.add_row("seats added", str(quote["seats_added"]))
        table.add_row("period", f"{quote['period_start']} to {quote['period_end']} (end excluded)")
        table.add_row(
            "days charged",
            f"{quote['days_remaining']} of {quote['days_in_period']} (today counted)",
        )
        table.add_row("net", f"{quote['net']} {quote['currency']}")
        table.add_row("tax", f"{quote['tax']} {quote['currency']}")
        table.add_row("gross", f"[bold]{quote['gross']} {quote['currency']}[/]")
        table.add_row("valid until", quote["expires_at"])
        self.console.print(table)

    def wait_for_invoice(self, cloud_id: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            invoices = self.ok("GET", f"/v1/clouds/{cloud_id}/invoices", self.owner)["invoices"]
            if invoices:
                return dict(invoices[0])
            time.sleep(0.1)
        raise CommandError("no invoice was issued within 30 s")

    def wait_for_email(self, invoice_id: str, timeout_s: float = 30) -> Path:
        outbox = self.settings.data_dir / "outbox"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = sorted(outbox.glob(f"*{invoice_id}*.eml")) if outbox.exists() else []
            if found:
                return found[0]
            time.sleep(0.1)
        raise CommandError("the invoice e-mail was not written within 30 s")

    def show_invoice(self, invoice: dict[str, Any]) -> None:
        table = Table(title=f"Invoice {invoice['invoice_number']} of {invoice['issue_date']}")
        for column in ("line", "qty", "unit price", "days", "amount"):
            table.add_column(column)
        for line in invoice["lines"]:
            table.add_row(
                line["description"],
                str(line["quantity"]),
                line["unit_price"],
                f"{line['remaining_days']}/{line['period_days']}",
                line["amount"],
            )
        cur = invoice["currency"]
        table.add_row("net", "", "", "", f"{invoice['net']} {cur}")
        table.add_row(f"tax {invoice['tax_rate']} %", "", "", "", f"{invoice['tax']} {cur}")
        table.add_row("[bold]gross", "", "", "", f"[bold]{invoice['gross']} {cur}")
        self.console.print(table)

    def licenses(self, cloud_id: str) -> None:
        cloud = self.ok("GET", f"/v1/clouds/{cloud_id}", self.owner)
        table = Table("user", "rights group")
        for holder in cloud["licenses"]:
            table.add_row(holder["user_id"], holder["rights_group"])
        self.console.print(table)
        self.say(
            f"{cloud['licenses_assigned']} of {cloud['seats']} licenses used, "
            f"{cloud['licenses_free']} free."
        )

    def state(self, cloud_id: str) -> None:
        cloud = self.ok("GET", f"/v1/clouds/{cloud_id}", self.owner)
        table = Table("", "", show_header=False)
        period = cloud["current_period"]
        for key, value in (
            ("name", cloud["name"]),
            ("seats", cloud["seats"]),
            ("licenses used / free", f"{cloud['licenses_assigned']} / {cloud['licenses_free']}"),
            ("current period", f"{period['start']} to {period['end']}"),
            (
                "price per seat",
                f"{cloud['seat_price']} {cloud['currency']} {cloud['billing_period']}",
            ),
            ("version", cloud["version"]),
        ):
            table.add_row(key, str(value))
        self.console.print(table)

    def history(self, cloud_id: str) -> None:
        events = self.ok("GET", f"/v1/clouds/{cloud_id}/events", self.admin)["events"]
        table = Table("v", "time (UTC)", "event", "details")
        for event in events:
            data = event["data"]
            name = event["type"].split(".")[2]
            table.add_row(str(event["version"]), event["time"][:19], name, _details(name, data))
        self.console.print(table)


def _details(name: str, data: dict[str, Any]) -> str:
    if name == "ContractOpened":
        return f"{data['seats']} seats, {data['terms']['seat_price']} {data['terms']['currency']}"
    if name == "SeatsIncreased":
        return (
            f"{data['seats_before']} -> {data['seats_after']} seats, "
            f"charged from {data['charge_date']}"
        )
    if name == "LicenseAssigned":
        before = f"{data['previous_rights_group']} -> " if data.get("previous_rights_group") else ""
        return f"{data['user_id']} ({before}{data['rights_group']})"
    if name == "LicenseReleased":
        after = data.get("rights_group") or "removed"
        return f"{data['user_id']} ({data['previous_rights_group']} -> {after})"
    if name == "LicenseRightsGroupChanged":
        return f"{data['user_id']} ({data['previous_rights_group']} -> {data['rights_group']})"
    if name == "PeriodRenewed":
        return f"{data['period']['start']} to {data['period']['end']}, {data['seats']} seats"
    return ""

"""The invoicer's HTTP API (same conventions as the ledger's: bearer JWTs, problem+json).

- ``GET /v1/clouds/{cloud_id}/invoices``: the cloud's invoices in issue order.
- ``GET /v1/invoices/{invoice_id}``: one invoice as JSON (the ``InvoiceIssued`` contract), or
  with ``Accept: application/pdf`` the PDF rendered from that same data.

Who may read: the invoice's customer owner (the contract's ``owner_id``), and holders of
``billing:admin`` or ``billing:audit``. Anyone else with a billing scope gets 403; anyone else
404, so the existence of an invoice is not revealed.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from seatledger.auth import SCOPE_ADMIN, SCOPE_AUDIT, SCOPE_LICENSES, AuthError, Principal
from seatledger.http import CurrentPrincipal, Problem, annotate
from seatledger.rendering import render_invoice_pdf
from services.invoicer.application import InvoicerApplication
from services.invoicer.contract import invoice_issued
from services.invoicer.domain import Invoice

PDF = "application/pdf"
JSON = "application/json"
READ_SCOPES = (SCOPE_ADMIN, SCOPE_AUDIT)


def _may_read(principal: Principal, owner_id: str) -> bool:
    return principal.subject == owner_id or principal.has_scope(*READ_SCOPES)


def _refuse(principal: Principal, what: str) -> Exception:
    if principal.has_scope(SCOPE_ADMIN, SCOPE_AUDIT, SCOPE_LICENSES):
        return AuthError(
            "reading invoices needs billing:admin or billing:audit, or being the owner",
            status=403,
            error="forbidden",
        )
    return Problem(404, "Not Found", f"no {what}")


def _media_type(request: Request) -> str:
    """``application/pdf`` when the client asks for it (and prefers it), else JSON; 406 if
    it accepts neither."""
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return JSON
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        quality = 1.0
        for parameter in pieces[1:]:
            if parameter.startswith("q="):
                try:
                    quality = float(parameter[2:])
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media))
    for _, _, media in sorted(ranked):
        if media == PDF:
            return PDF
        if media in (JSON, "application/*", "*/*", "application/problem+json"):
            return JSON
    raise Problem(
        406,
        "Not Acceptable",
        "an invoice is available as application/json or application/pdf",
    )


def invoice_view(invoice: Invoice) -> dict[str, Any]:
    data = invoice_issued(invoice).model_dump(mode="json")
    data["links"] = {
        "self": f"/v1/invoices/{invoice.id}",
        "cloud_invoices": f"/v1/clouds/{invoice.cloud_id}/invoices",
    }
    return data


def build_router(app: InvoicerApplication) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["invoices"])

    @router.get("/clouds/{cloud_id}/invoices", summary="A cloud's invoices, in issue order")
    def cloud_invoices(
        cloud_id: UUID, principal: CurrentPrincipal, request: Request
    ) -> dict[str, Any]:
        annotate(request, cloud_id=str(cloud_id))
        invoices = app.invoices_of_cloud(cloud_id)
        # A cloud without invoices answers the same to everybody: nothing is revealed.
        if invoices and not _may_read(principal, invoices[-1].customer.owner_id):
            raise _refuse(principal, f"invoices of cloud {cloud_id}")
        return {
            "cloud_id": str(cloud_id),
            "count": len(invoices),
            "invoices": [invoice_view(invoice) for invoice in invoices],
        }

    @router.get(
        "/invoices/{invoice_id}",
        summary="One invoice: JSON, or the PDF with Accept: application/pdf",
        responses={200: {"content": {JSON: {}, PDF: {}}}},
    )
    def get_invoice(invoice_id: UUID, principal: CurrentPrincipal, request: Request) -> Response:
        media = _media_type(request)
        invoice = app.find_invoice(invoice_id)
        if invoice is None:
            if principal.has_scope(*READ_SCOPES):
                raise Problem(404, "Not Found", f"no invoice {invoice_id}")
            raise _refuse(principal, f"invoice {invoice_id}")
        annotate(request, cloud_id=str(invoice.cloud_id), invoice_number=invoice.number)
        if not _may_read(principal, invoice.customer.owner_id):
            raise _refuse(principal, f"invoice {invoice_id}")
        if media == PDF:
            return Response(
                render_invoice_pdf(invoice_issued(invoice)),
                media_type=PDF,
                headers={
                    "Content-Disposition": f'inline; filename="{invoice.number}.pdf"',
                    "Vary": "Accept",
                },
            )
        return JSONResponse(invoice_view(invoice), headers={"Vary": "Accept"})

    return router

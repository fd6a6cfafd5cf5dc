"""HTTP plumbing shared by the services' APIs (see :func:`seatledger.http.app.create_app`)."""

from seatledger.http.app import CurrentPrincipal, ReadinessCheck, create_app, get_principal
from seatledger.http.idempotency import IdempotencyStore
from seatledger.http.problems import Problem, problem_response
from seatledger.http.requestlog import annotate
from seatledger.http.sqldb import SqlDatabase

__all__ = [
    "CurrentPrincipal",
    "IdempotencyStore",
    "Problem",
    "ReadinessCheck",
    "SqlDatabase",
    "annotate",
    "create_app",
    "get_principal",
    "problem_response",
]

"""Which answers an Idempotency-Key keeps (the request's real outcome) and which release it."""

from __future__ import annotations

import json

import pytest

from seatledger.http.idempotency import CONCURRENT_MODIFICATION, is_outcome
from seatledger.http.problems import PROBLEM_BASE, PROBLEM_CONTENT_TYPE

PROBLEM = [("content-type", PROBLEM_CONTENT_TYPE)]


def problem(status: int, type_: str) -> bytes:
    return json.dumps({"type": type_, "title": "t", "status": status}).encode()


@pytest.mark.parametrize("status", [200, 201, 204])
def test_a_success_is_kept(status: int) -> None:
    assert is_outcome(status, [("content-type", "application/json")], b"{}")


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_refusal_of_the_request_itself_is_kept(status: int) -> None:
    assert is_outcome(status, PROBLEM, problem(status, PROBLEM_BASE + "invalid-request"))


@pytest.mark.parametrize("title", ["seats-must-grow", "no-free-seat", "quote-not-honoured"])
def test_a_business_rule_conflict_is_kept(title: str) -> None:
    assert is_outcome(409, PROBLEM, problem(409, PROBLEM_BASE + title))


def test_a_concurrency_conflict_releases_the_key() -> None:
    assert not is_outcome(409, PROBLEM, problem(409, CONCURRENT_MODIFICATION))


@pytest.mark.parametrize("status", [401, 403, 405, 408, 425, 429, 500, 502, 503, 504])
def test_auth_throttling_and_server_errors_release_the_key(status: int) -> None:
    assert not is_outcome(status, PROBLEM, problem(status, PROBLEM_BASE + "x"))


def test_a_409_that_is_not_a_problem_document_is_kept() -> None:
    assert is_outcome(409, [("content-type", "text/plain")], b"conflict")
    assert is_outcome(409, PROBLEM, b"{not json")


def test_the_fingerprint_covers_the_query_string() -> None:
    from seatledger.http.idempotency import request_fingerprint

    path = "/v1/clouds/c/licenses/u"
    guest = request_fingerprint("DELETE", path, b"rights_group=guest", b"")
    plain = request_fingerprint("DELETE", path, b"", b"")
    assert guest != plain
    assert guest == request_fingerprint("DELETE", path, b"rights_group=guest", b"")


def test_the_fingerprint_tells_method_path_query_and_body_apart() -> None:
    from seatledger.http.idempotency import request_fingerprint

    # Moving bytes from one part to the next makes another request.
    assert request_fingerprint("POST", "/a", b"b", b"") != request_fingerprint(
        "POST", "/ab", b"", b""
    )
    assert request_fingerprint("POST", "/a", b"", b"x") != request_fingerprint(
        "POST", "/a", b"x", b""
    )
    assert request_fingerprint("PUT", "/a", b"", b"") != request_fingerprint("POST", "/a", b"", b"")

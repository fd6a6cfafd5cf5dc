"""Bounds every server applies, checked over real sockets against a real uvicorn server:
header and body deadlines, body and answer sizes, one Authorization header, a body cut off
mid-upload, the query string in an Idempotency-Key's request, a request id on every error."""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx

from tests.integration.http.conftest import raw_exchange


def _request(
    method: str, path: str, token: str, body: bytes = b"", *, key: str | None = None
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if key is not None:
        lines.append(f"Idempotency-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_client_that_never_finishes_its_headers_is_disconnected(serve):
    served = serve(header_timeout_s=1.0)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        started = time.monotonic()
        for _ in range(5):  # a trickle of bytes does not extend the deadline
            time.sleep(0.15)
            sock.sendall(b"a")
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 3.0
    # A client that sends its headers in time is served on the same server.
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_a_kept_alive_connection_has_the_same_deadline_for_its_next_request(serve):
    served = serve(header_timeout_s=1.0)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in sock.recv(65536)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 1")
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 3.0


def test_a_body_larger_than_the_bound_is_refused_with_413(serve):
    served = serve(max_body_bytes=2048)
    token = served.token()
    body = json.dumps({"blob": "x" * 4000}).encode()
    answer = raw_exchange(served.port, _request("POST", "/v1/things", token, body))
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"application/problem+json" in answer
    assert b"x-request-id" in answer.lower()
    assert served.recorder.calls == []


def test_an_announced_body_too_large_is_refused_before_it_is_sent(serve):
    served = serve(max_body_bytes=2048)
    head = _request("POST", "/v1/things", served.token()).replace(
        b"Content-Length: 0", b"Content-Length: 10000000"
    )
    answer = raw_exchange(served.port, head)  # no body sent at all
    assert answer.startswith(b"HTTP/1.1 413")
    assert served.recorder.calls == []


def test_a_chunked_body_growing_past_the_bound_is_refused(serve):
    served = serve(max_body_bytes=2048)
    response = httpx.post(
        f"{served.url}/v1/things",
        content=iter([b"x" * 1000] * 5),  # no Content-Length: chunked transfer
        headers={"Authorization": f"Bearer {served.token()}"},
    )
    assert response.status_code == 413
    assert served.recorder.calls == []


def test_a_body_that_does_not_arrive_in_time_is_answered_408(serve):
    served = serve(body_timeout_s=1.0)
    body = b'{"name": "slow"}'
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(_request("POST", "/v1/things", served.token(), body)[: -len(body) + 3])
        started = time.monotonic()
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 3.0
    assert served.recorder.calls == []


def test_an_answer_larger_than_the_bound_is_not_sent(serve):
    served = serve(max_response_bytes=100_000)
    response = httpx.get(f"{served.url}/v1/big")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert len(response.content) < 1000


def test_two_authorization_headers_are_refused_with_400_before_anything_runs(serve, store_env):
    served = serve(store_env)
    alice, mallory = served.token("alice"), served.token("mallory")
    request = (
        "POST /v1/things HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {alice}\r\nAuthorization: Bearer {mallory}\r\n"
        "Idempotency-Key: k-1\r\nContent-Length: 2\r\n\r\n{}"
    ).encode()
    answer = raw_exchange(served.port, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Authorization header may be given only once" in answer
    assert served.recorder.calls == []
    # The key was never claimed: alice's own request with it runs.
    response = httpx.post(
        f"{served.url}/v1/things",
        content=b"{}",
        headers={"Authorization": f"Bearer {alice}", "Idempotency-Key": "k-1"},
    )
    assert response.status_code == 201
    assert response.json()["by"] == "alice"


def test_a_body_cut_off_mid_upload_does_not_poison_its_key(serve, store_env):
    served = serve(store_env)
    token = served.token()
    key = f"cut-{uuid.uuid4().hex}"
    body = json.dumps({"seats": 8, "note": "y" * 500}).encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(_request("POST", "/v1/things", token, body, key=key)[: -len(body) // 2])
    # The client is gone; give the server a moment to notice.
    time.sleep(0.5)
    assert served.recorder.calls == []
    response = httpx.post(
        f"{served.url}/v1/things",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    assert len(served.recorder.calls) == 1
    replay = httpx.post(
        f"{served.url}/v1/things",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(served.recorder.calls) == 1


def test_the_same_key_with_another_query_string_is_another_request(serve, store_env):
    served = serve(store_env)
    headers = {"Authorization": f"Bearer {served.token()}", "Idempotency-Key": "q-1"}
    first = httpx.delete(f"{served.url}/v1/things/t1?mode=guest", headers=headers)
    assert first.json() == {"deleted": "t1", "mode": "guest"}
    other = httpx.delete(f"{served.url}/v1/things/t1", headers=headers)
    assert other.status_code == 422
    assert other.json()["title"] == "Idempotency-Key reused"
    again = httpx.delete(f"{served.url}/v1/things/t1?mode=guest", headers=headers)
    assert again.json() == first.json()
    assert len(served.recorder.calls) == 1


def test_an_unhandled_error_is_a_500_problem_with_a_request_id(serve):
    served = serve()
    response = httpx.get(f"{served.url}/v1/fail", headers={"X-Request-Id": "req-fail-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-fail-1"
    assert "a bug in a route" not in response.text  # no internals in the answer
    generated = httpx.get(f"{served.url}/v1/fail")
    assert len(generated.headers["x-request-id"]) == 32


def test_an_answer_is_kept_for_its_key_before_the_client_receives_it(serve, store_env):
    served = serve(store_env)
    assert served.store is not None
    token = served.token("owner-7")
    for attempt in range(20):
        key = f"kept-{attempt}"
        response = httpx.post(
            f"{served.url}/v1/things",
            content=b"{}",
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )
        assert response.status_code == 201
        # A process killed right after sending would leave nothing else behind: the key
        # already holds the answer the client got.
        claim = served.store.claim("owner-7", key, "another request")
        assert claim.outcome == "mismatch"
        rows, _ = served.store.db.execute(
            f"SELECT state, body FROM {served.store.db.table('idempotency_keys')}"
            " WHERE principal = ? AND key = ?",
            ("owner-7", key),
        )
        assert rows[0][0] == "done"
        assert bytes.fromhex(rows[0][1]) == response.content

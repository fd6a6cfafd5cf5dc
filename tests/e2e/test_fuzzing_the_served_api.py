"""Fuzzing the served API: schemathesis drives every operation of the OpenAPI document that
`seatledger serve` publishes, as a real process over HTTP, with the tokens real callers hold.

Each operation gets bounded examples, valid ones (what the document allows) and invalid ones
(what it forbids: wrong types, missing fields, out-of-range values, odd strings), sent with an
admin token (every billing scope) and with the owner's token (step-up included). Path
parameters hit the one real cloud half of the time, random ids otherwise.

What must hold for every answer:
- never a 5xx;
- every refusal (4xx) is an ``application/problem+json`` document;
- every answer carries an ``X-Request-Id``;
- no answer is larger than :data:`MAX_RESPONSE_BYTES`.
After the run the process still answers ``/healthz`` quickly and its log holds one JSON object
per line (no multi-line traceback).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.e2e.support import JWT_SECRET, ServiceProcess, Tokens, free_port

pytestmark = pytest.mark.e2e

OWNER = "fuzz-owner"
#: Examples per operation, token and mode: bounded, so the suite stays fast.
EXAMPLES = 12
#: No answer of the API may be larger (a cloud with many licenses stays far below).
MAX_RESPONSE_BYTES = 256 * 1024

CLOUD = {
    "name": "Fuzz GmbH",
    "owner_id": OWNER,
    "billing_email": "billing@fuzz.example",
    "currency": "EUR",
    "seat_price": "12.00",
    "billing_period": "monthly",
    "term_start": "2026-01-15",
    "time_zone": "Europe/Berlin",
    "tax_rate": "19",
    "locale": "de",
    "seats": 5,
}


class Served:
    def __init__(self, process: ServiceProcess, cloud_id: str, tokens: Tokens) -> None:
        self.process = process
        self.cloud_id = cloud_id
        self.headers = {
            "admin": tokens("fuzz-admin", "billing:admin", "billing:audit", "billing:licenses"),
            "owner": tokens(OWNER, step_up=True),
        }
        self.schema = schemathesis.openapi.from_url(f"{process.url}/openapi.json")
        self.session = requests.Session()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("fuzz")
    process = ServiceProcess(
        ["serve"],
        {
            "SEATLEDGER_DATA_DIR": str(folder / "data"),
            "SEATLEDGER_JWT_SECRET": JWT_SECRET,
            "SEATLEDGER_LOG_LEVEL": "INFO",
        },
        free_port(),
        folder / "serve.log",
    ).start()
    try:
        tokens = Tokens()
        opened = httpx.post(
            f"{process.url}/v1/clouds",
            json=CLOUD,
            headers=tokens("fuzz-admin", "billing:admin"),
            timeout=30,
        )
        assert opened.status_code == 201, opened.text
        yield Served(process, opened.json()["cloud_id"], tokens)
    finally:
        assert process.stop() == 0, process.tail()


def _operations(served: Served) -> list[Any]:
    operations = [result.ok() for result in served.schema.get_all_operations()]
    assert len(operations) >= 10, "the served document lists every operation"
    return operations


def _header(response: schemathesis.Response, name: str) -> str:
    """A response header's first value ('' when absent)."""
    for key, values in response.headers.items():
        if key.lower() == name:
            return values[0] if values else ""
    return ""


def _check(case: Any, response: schemathesis.Response) -> None:
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    assert len(response.content) <= MAX_RESPONSE_BYTES, where
    assert _header(response, "x-request-id"), where
    if response.status_code >= 400:
        content_type = _header(response, "content-type")
        assert content_type.startswith("application/problem+json"), where
        problem = response.json()
        assert problem["status"] == response.status_code, where
        assert problem["title"], where


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("caller", ["admin", "owner"])
def test_no_operation_answers_a_server_error_or_an_oversized_answer(
    served: Served, caller: str, mode: GenerationMode
) -> None:
    headers = served.headers[caller]
    exercised = 0
    for operation in _operations(served):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), real_cloud=st.booleans())
        def probe(case: Any, real_cloud: bool) -> None:
            if real_cloud and "cloud_id" in (case.path_parameters or {}):
                case.path_parameters["cloud_id"] = served.cloud_id
            response = case.call(
                base_url=served.process.url,
                session=served.session,
                headers=headers,
                timeout=30,
            )
            _check(case, response)

        try:
            probe()
        except Unsatisfiable:
            # No input violates this operation's document (e.g. a GET without parameters).
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        exercised += 1
    assert exercised >= 5, "most operations take input that can be broken"


#: Values that careless and hostile clients send, tried in every field of every body.
HOSTILE_VALUES: list[Any] = [
    None,
    "",
    " ",
    " 12 ",
    "0E-5000000",
    "1e3",
    "+12",
    "1_000",
    "\u0661\u0662",  # Arabic-Indic digits
    "-1",
    "123456789012345678901",
    "1" * 400,
    "NaN",
    "Infinity",
    "9999-12-16",
    "0001-01-01",
    "2026-02-30",
    "localtime",
    "posixrules",
    "right/UTC",
    "Factory",
    "a,b@example.com",
    "a\u0001b@example.com",
    "a(b)@example.com",
    "Name\u0000with\u0007controls",
    "a/b",
    "../x",
    "..",
    "%2F",
    "x" * 5000,
    -1,
    0,
    2**63,
    1e308,
    True,
    [],
    {},
    {"nested": ["deep"] * 50},
]

#: A valid body per operation (method, path template) that takes one.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/clouds"): CLOUD,
    ("POST", "/v1/clouds/{cloud_id}/licenses"): {"user_id": "u-1", "rights_group": "employee"},
    ("PUT", "/v1/clouds/{cloud_id}/users/{user_id}/rights-group"): {"rights_group": "employee"},
    ("PUT", "/v1/clouds/{cloud_id}/billing-email"): {"billing_email": "new@fuzz.example"},
    ("POST", "/v1/clouds/{cloud_id}/seat-quotes"): {"seats": 6},
    ("POST", "/v1/clouds/{cloud_id}/seat-purchases"): {"seats": 6},
    ("POST", "/v1/clouds/{cloud_id}/seat-reductions"): {"seats": 4},
}


def _answer(response: httpx.Response, where: str) -> None:
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
    assert len(response.content) <= MAX_RESPONSE_BYTES, f"{where}: {len(response.content)} bytes"
    assert response.headers.get("x-request-id"), where
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), where


def test_hostile_values_in_any_field_are_refused_or_harmless(served: Served) -> None:
    """Each field of each body in turn gets each hostile value, the rest stays valid. The
    answer is a refusal or a success that does not harm: every cloud it opens still answers
    within bounds, as does its owner's overview."""
    http = httpx.Client(base_url=served.process.url, timeout=30)
    admin, owner = served.headers["admin"], served.headers["owner"]
    seen: set[str] = set()
    for (method, template), valid in VALID_BODIES.items():
        path = template.format(cloud_id=served.cloud_id, user_id="u-2")
        headers = owner if "seat-" in template else admin
        for field in valid:
            for value in HOSTILE_VALUES:
                body = {**valid, field: value}
                where = f"{method} {template} {field}={value!r:.60}"
                response = http.request(method, path, json=body, headers=headers)
                _answer(response, where)
                if response.status_code < 300 and method == "POST" and template == "/v1/clouds":
                    opened = response.json()
                    cloud_id, owner_id = opened["cloud_id"], opened["owner_id"]
                    _answer(http.get(f"/v1/clouds/{cloud_id}", headers=admin), f"GET after {where}")
                    if owner_id not in seen:
                        seen.add(owner_id)
                        overview = http.get(
                            f"/v1/owners/{quote(owner_id, safe='')}/clouds", headers=admin
                        )
                        _answer(overview, f"overview after {where}")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/clouds/{cloud_id}?as_of=9999-12-01T00:00:00Z",
        "/v1/clouds/{cloud_id}?as_of=9999-12-31T23:59:59Z",
        "/v1/clouds/{cloud_id}?as_of=0001-01-01T00:00:00Z",
        "/v1/clouds/{cloud_id}?as_of=2026-13-01T00:00:00Z",
        "/v1/clouds/{cloud_id}/licenses/a%2Fb",
        "/v1/clouds/{cloud_id}/licenses/..%2Fx",
        "/v1/owners/a%2Fb/clouds",
        "/v1/clouds/not-a-uuid",
    ],
)
def test_hostile_paths_and_queries_are_answered_quickly_within_bounds(
    served: Served, path: str
) -> None:
    http = httpx.Client(base_url=served.process.url, timeout=30)
    url = path.format(cloud_id=served.cloud_id)
    for method in ("GET", "DELETE"):
        started = time.monotonic()
        response = http.request(method, url, headers=served.headers["admin"])
        _answer(response, f"{method} {url}")
        assert time.monotonic() - started < 1.0, f"{method} {url} took too long"


def test_the_server_stays_healthy_and_logs_one_json_object_per_line(served: Served) -> None:
    # Runs after the fuzzing above (same module, same process).
    started = time.monotonic()
    health = httpx.get(f"{served.process.url}/healthz", timeout=10)
    assert health.status_code == 200
    assert time.monotonic() - started < 1.0
    # stdout (the start banner) and stderr (the JSON log) share the file.
    log = Path(served.process.log_path).read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in log if line.startswith("{")]
    assert records, "the process logs JSON lines"
    assert not [line for line in log if "Traceback" in line or line.lstrip().startswith("File ")]

"""The API's parameter rules, its OpenAPI description and its answer to unmatched requests, without servers.

The routes are driven with the inputs the issue reported (epoch seconds, ``²``, a 4,300-digit
number) and with hypothesis-generated text: every parser either returns a value or raises
``ApiError`` with status 400; nothing else escapes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions import api as api_module
from shared.serving.openapi import ROUTES, document, unmatched
from shared.serving.params import TIME_RANGE_MS, ApiError, check_known, parse_bool, parse_int, parse_time_ms


@pytest.mark.parametrize(("text", "expected"), [
    ("1723161240000", 1723161240000), ("2024-08-08T23:54:00Z", 1723161240000),
    ("2024-08-09T01:54+02:00", 1723161240000), ("2024-08-08T23:54:00", 1723161240000),
    ("2024-08-08", 1723075200000), (" 1723161240000 ", 1723161240000), ("2009-01-03T00:00:00Z", TIME_RANGE_MS[0]),
])
def test_times_in_ms_or_iso(text, expected):
    assert parse_time_ms({"from": text}, "from") == expected


@pytest.mark.parametrize(("text", "says"), [
    ("1561942680", "looks like seconds since the epoch; pass ms: from=1561942680000 (2019-07-01T00:58:00Z)"),
    ("1561942680000000", "looks like microseconds since the epoch; pass ms: from=1561942680000"),
    ("1561942680000000000", "looks like nanoseconds since the epoch; pass ms: from=1561942680000"),
    ("60000", "before 2009-01-03"), ("0", "before 2009-01-03"), ("99999999999999999", "after 2099"),
    ("2100-01-01T00:00:00Z", "outside 2009-01-03 to 2099"), ("1970-01-01", "outside 2009-01-03 to 2099"),
    ("0001-01-01T00:00+01:00", "outside"), ("9999-12-31T23:59:59-23:59", "outside"),
    ("²", "ms since the Unix epoch or an ISO 8601 time"), ("٣٣", "ms since the Unix epoch or an ISO 8601"),
    ("9" * 4300, "4300 digits"), ("-1", "ISO 8601"), ("yesterday", "ISO 8601"), ("2019-13-01T00:00Z", "ISO 8601"),
    ("1e12", "ISO 8601"), ("\x00", "ISO 8601"), ("NaN", "ISO 8601"),
])
def test_bad_times_name_the_problem_and_the_fix(text, says):
    with pytest.raises(ApiError) as err:
        parse_time_ms({"from": text}, "from")
    assert err.value.status == 400 and err.value.parameter == "from" and says in err.value.message


@pytest.mark.parametrize("text", ["²", "9" * 4300, "1.5", "+-5", "٣", "0x10", "1_000", " ", "\x00"])
def test_bad_whole_numbers(text):
    if not text.strip():
        assert parse_int({"limit": text}, "limit", (60, 1, 1000)) == 60
        return
    with pytest.raises(ApiError, match="limit must be a whole number"):
        parse_int({"limit": text}, "limit", (60, 1, 1000))


def test_bools_and_unknown_names():
    assert parse_bool({"refused": "1"}, "refused") and not parse_bool({"refused": "False"}, "refused")
    with pytest.raises(ApiError, match="refused must be true or false"):
        parse_bool({"refused": "yes"}, "refused")
    with pytest.raises(ApiError, match="unknown query parameter 'form'; this route takes: from, to, limit"):
        check_known({"form": "1"}, ("from", "to", "limit"))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60) | st.from_regex(r"[0-9+\-:TZ .]{1,30}", fullmatch=True)
       | st.integers(min_value=-10**30, max_value=10**30).map(str))
def test_parsers_return_a_value_or_a_400_for_any_text(text):
    for parse in (lambda p: parse_time_ms(p, "from"), lambda p: parse_int(p, "limit", (60, 1, 1000)),
                  lambda p: parse_bool(p, "refused")):
        try:
            value = parse({"from": text, "limit": text, "refused": text})
        except ApiError as err:
            assert err.status == 400 and err.message
        else:
            assert value is None or isinstance(value, (int, bool))
            if isinstance(value, int) and not isinstance(value, bool) and value > 1000:
                assert TIME_RANGE_MS[0] <= value < TIME_RANGE_MS[1]


def test_openapi_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    doc = document("http://127.0.0.1:7071/")
    validate(doc, cls=OpenAPIV31SpecValidator)  # raises on any violation of the 3.1 schema
    assert doc["openapi"] == "3.1.0" and len(doc["paths"]) == len(ROUTES)
    bars = doc["paths"]["/api/bars/{symbol}"]["get"]
    assert [p["name"] for p in bars["parameters"]] == ["symbol", "from", "to", "limit"]
    assert "looks like" not in json.dumps(doc) and "seconds" in json.dumps(bars)


def test_openapi_is_served_by_its_function():
    req = func.HttpRequest(method="GET", url="http://localhost:7071/api/openapi.json", body=b"")
    response = api_module.openapi.build().get_user_function()(req)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert json.loads(response.get_body()) == document("http://localhost:7071/")


@pytest.mark.parametrize(("path", "method", "status", "allow"), [
    ("nope", "GET", 404, None), ("", "GET", 404, None), ("bars/kraken:BTC-USD/extra", "GET", 404, None),
    ("bars/kraken:BTC-USD", "POST", 405, "GET"), ("negotiate", "GET", 405, "POST"),
    ("dashboard/app.js", "DELETE", 405, "GET"), ("openapi.json", "PUT", 405, "GET"), ("%00", "GET", 404, None),
])
def test_the_catch_all_answers_json_404_or_405(path, method, status, allow):
    req = func.HttpRequest(method=method, url=f"http://localhost:7071/api/{path}", route_params={"path": path},
                           body=b"")
    response = api_module.not_found.build().get_user_function()(req)
    body = json.loads(response.get_body())
    assert response.status_code == status and response.mimetype == "application/json"
    assert body["error"]["status"] == status and body["error"]["message"]
    assert response.headers.get("Allow") == allow
    if status == 404:
        assert "/api/openapi.json" in body["error"]["message"]
    assert unmatched("/api/" + path, method)[0] == status


def test_iso_times_round_trip_to_ms():
    for ms in (TIME_RANGE_MS[0], 1723161240123, TIME_RANGE_MS[1] - 1):
        iso = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
        assert parse_time_ms({"to": iso}, "to") == ms

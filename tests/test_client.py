"""Every row of the contract's error table maps to the right exception."""

from __future__ import annotations

import json

import pytest

from sweeper.client import interpret_answer, parse_edit_result, redact, server_message
from sweeper.errors import (
    AuthError,
    CreditsError,
    JobError,
    RateLimited,
    TransientError,
)

KEY = "sk-test-secret-key-0123456789"


def record(status: str = "SUCCESS", paths=("a.webp",), urls=("http://s/a.webp",), **extra):
    return {
        "aiRecord": {
            "uuid": "u-1",
            "status": status,
            "aiRecordDetail": {"resultObject": list(paths), "responseObject": extra},
            "temporaryUrl": list(urls),
        }
    }


def test_success_returns_json() -> None:
    assert interpret_answer(200, {}, '{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_aborts_without_printing_it(status: int) -> None:
    with pytest.raises(AuthError) as caught:
        interpret_answer(status, {}, json.dumps({"message": f"bad key {KEY}"}), KEY)
    assert "rejected" in str(caught.value)
    assert KEY not in str(caught.value)


def test_402_is_out_of_credits() -> None:
    with pytest.raises(CreditsError):
        interpret_answer(402, {}, '{"message": "Payment required"}')


def test_credits_message_on_400_is_out_of_credits() -> None:
    with pytest.raises(CreditsError):
        interpret_answer(400, {}, '{"message": "Insufficient credits for this request"}')


@pytest.mark.parametrize("status", [400, 422])
def test_invalid_request_fails_the_job_with_the_servers_message(status: int) -> None:
    with pytest.raises(JobError) as caught:
        interpret_answer(status, {}, '{"message": "guidance must be <= 20"}')
    assert "guidance must be <= 20" in str(caught.value)


def test_429_carries_retry_after_seconds() -> None:
    with pytest.raises(RateLimited) as caught:
        interpret_answer(429, {"Retry-After": "7"}, "{}")
    assert caught.value.retry_after == 7


def test_429_without_retry_after() -> None:
    with pytest.raises(RateLimited) as caught:
        interpret_answer(429, {}, "")
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    with pytest.raises(TransientError) as caught:
        interpret_answer(status, {}, '{"message": "boom"}')
    assert not isinstance(caught.value, RateLimited)


def test_html_gateway_page_is_transient_and_never_crashes() -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    with pytest.raises(TransientError) as caught:
        interpret_answer(502, {}, page)
    assert "gateway" in str(caught.value)


def test_200_with_garbage_body_is_transient() -> None:
    with pytest.raises(TransientError):
        interpret_answer(200, {}, "<html>oops</html>")


def test_success_record_pairs_paths_with_urls() -> None:
    result = parse_edit_result(record(paths=["p0", "p1"], urls=["u0", "u1"]))
    assert result.record_uuid == "u-1"
    assert [(o.index, o.remote_path, o.url) for o in result.outputs] == [
        (0, "p0", "u0"),
        (1, "p1", "u1"),
    ]


def test_failed_record_keeps_the_servers_message() -> None:
    with pytest.raises(JobError) as caught:
        parse_edit_result(record("FAILED", [], [], error="NSFW content detected"))
    assert "FAILED" in str(caught.value)
    assert "NSFW content detected" in str(caught.value)


def test_empty_lists_fail_the_job() -> None:
    with pytest.raises(JobError, match="no images"):
        parse_edit_result(record(paths=[], urls=[]))


def test_unequal_lists_fail_the_job() -> None:
    with pytest.raises(JobError, match="2 image paths but 1 URLs"):
        parse_edit_result(record(paths=["a", "b"], urls=["u"]))


def test_answer_without_record_fails_the_job() -> None:
    with pytest.raises(JobError):
        parse_edit_result({"something": "else"})


def test_server_message_is_one_short_line_without_the_key() -> None:
    text = "line one\nline two " + KEY + " " + "x" * 1000
    message = server_message(text, KEY)
    assert "\n" not in message
    assert KEY not in message
    assert len(message) <= 300


def test_redact_without_a_key_changes_nothing() -> None:
    assert redact("abc", "") == "abc"


@pytest.mark.parametrize("detail", ["oops", None, ["a.webp"], 42])
def test_a_record_of_the_wrong_shape_fails_the_job_instead_of_crashing(detail) -> None:
    payload = record()
    payload["aiRecord"]["aiRecordDetail"] = detail
    with pytest.raises(JobError, match="no images"):
        parse_edit_result(payload)


@pytest.mark.parametrize("body", [{"fileContent": "x"}, {"asset": ["k"]}, {"fileContent": {}}])
def test_an_upload_answer_of_the_wrong_shape_is_transient(body) -> None:
    from sweeper.client import _asset_path_from

    with pytest.raises(TransientError, match=r"neither fileContent\.path nor asset\.key"):
        _asset_path_from(body, KEY)

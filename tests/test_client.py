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


def test_200_with_garbage_body_is_unanswered() -> None:
    from sweeper.client import Unanswered

    with pytest.raises(Unanswered):
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


def test_a_success_without_images_is_paid_for_with_every_image_lost() -> None:
    result = parse_edit_result(record(paths=[], urls=[]), num_outputs=2)
    assert [(o.remote_path, o.url) for o in result.outputs] == [("", ""), ("", "")]


def test_fewer_urls_than_paths_leaves_the_missing_image_without_a_url() -> None:
    result = parse_edit_result(record(paths=["a", "b"], urls=["u"]), num_outputs=2)
    assert [(o.remote_path, o.url) for o in result.outputs] == [("a", "u"), ("b", "")]


def test_more_results_than_outputs_keeps_exactly_num_outputs() -> None:
    paths, urls = [f"p{i}" for i in range(10)], [f"u{i}" for i in range(10)]
    result = parse_edit_result(record(paths=paths, urls=urls), num_outputs=1)
    assert [(o.index, o.url) for o in result.outputs] == [(0, "u0")]
    assert result.surplus == 9


def test_a_single_string_counts_as_a_one_element_list() -> None:
    payload = record()
    payload["aiRecord"]["temporaryUrl"] = "http://s/a.webp"
    payload["aiRecord"]["aiRecordDetail"]["resultObject"] = "a.webp"
    result = parse_edit_result(payload, num_outputs=1)
    assert [(o.remote_path, o.url) for o in result.outputs] == [("a.webp", "http://s/a.webp")]


def test_the_used_credit_counter_is_read_when_present() -> None:
    payload = record()
    payload["aiRecord"]["teamUser"] = {"usedCredit": 8164605}
    assert parse_edit_result(payload).used_credit == 8164605
    assert parse_edit_result(record()).used_credit is None


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
def test_a_success_of_the_wrong_shape_is_paid_for_never_a_crash(detail) -> None:
    payload = record()
    payload["aiRecord"]["aiRecordDetail"] = detail
    result = parse_edit_result(payload, num_outputs=1)
    assert [o.remote_path for o in result.outputs] == [""]  # paid, its image path unknown


def test_a_429_is_a_rate_limit_even_when_it_mentions_credits() -> None:
    body = '{"message": "You have exceeded 100 credits per minute"}'
    with pytest.raises(RateLimited):
        interpret_answer(429, {}, body)


@pytest.mark.parametrize(
    "message",
    ["Insufficient credits", "Your credits are exhausted", "Not enough credits left"],
)
def test_a_4xx_saying_the_credits_ran_out_is_out_of_credits(message) -> None:
    with pytest.raises(CreditsError):
        interpret_answer(403 if "left" in message else 400, {}, json.dumps({"message": message}))


def test_a_4xx_that_only_mentions_credits_is_an_invalid_request() -> None:
    with pytest.raises(JobError) as caught:
        interpret_answer(400, {}, '{"message": "credits field is not allowed here"}')
    assert not isinstance(caught.value, CreditsError)


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, "imageUrl not found"), (404, "Asset does not exist"), (422, "unknown image")],
)
def test_a_forgotten_asset_is_told_apart_from_an_invalid_request(status, message) -> None:
    from sweeper.client import UnknownAsset

    with pytest.raises(UnknownAsset):
        interpret_answer(status, {}, json.dumps({"message": message}))
    with pytest.raises(JobError) as caught:
        interpret_answer(status, {}, '{"message": "guidance must be <= 20"}')
    assert not isinstance(caught.value, UnknownAsset)


def test_deeply_nested_json_is_unanswered_never_a_recursion_error() -> None:
    from sweeper.client import Unanswered, parse_json_answer

    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(Unanswered, match="nested"):
        parse_json_answer(deep, 64)
    with pytest.raises(Unanswered, match="deeper than 64"):
        parse_json_answer("[" * 65 + "]" * 65, 64)
    assert parse_json_answer("[" * 64 + "]" * 64, 64) is not None
    with pytest.raises(TransientError):  # on an error status it is still that status
        interpret_answer(500, {}, deep)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("sk-abc\n", "line break"),
        ("sk-\rabc", "line break"),
        ("sk-\x00", "control"),
        ("sk-é", "non-ASCII"),
    ],
)
def test_a_key_that_cannot_be_a_header_is_refused_before_any_request(key, problem) -> None:
    from sweeper.contract import check_api_key
    from sweeper.errors import SpecError

    with pytest.raises(SpecError, match=problem) as caught:
        check_api_key(key)
    assert key not in str(caught.value)


@pytest.mark.parametrize("body", [{"fileContent": "x"}, {"asset": ["k"]}, {"fileContent": {}}])
def test_an_upload_answer_of_the_wrong_shape_is_transient(body) -> None:
    from sweeper.client import _asset_path_from

    with pytest.raises(TransientError, match=r"neither fileContent\.path nor asset\.key"):
        _asset_path_from(body, KEY)

"""Pins sweeper/client.py and sweeper/retry.py: how attempts end, answers parse, and retries run."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from engine_run import PHOTO
from loopback import Handler, serve
from virtual_time import SocketVirtualTimeLoop

from sweeper.client import (
    ApiClient,
    ResponseLimits,
    UnknownAsset,
    _asset_path_from,
    describe_network_error,
    interpret_answer,
    json_depth,
    parse_edit_result,
    parse_json_answer,
    server_message,
)
from sweeper.clock import FakeClock
from sweeper.contract import FEATURE_TYPE, MODEL
from sweeper.errors import (
    ApiRedirected,
    AuthError,
    CreditsError,
    InterruptedRun,
    JobError,
    NotSent,
    RateLimited,
    RecordFailed,
    SpecError,
    SweeperError,
    TransientError,
    Unanswered,
)
from sweeper.image_check import ImageProblem, load_input_image
from sweeper.retry import Attempts, GaveUp, RetryPolicy, parse_retry_after
from sweeper.simulator import FaultRule, SimulatorConfig, run_simulator

KEY = "sk-money-client-SENTINEL-42"


# --- helpers: a server of our own, a client, one request -------------------------------


def answering(status: int, body: bytes | str, **headers: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        data = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=data, headers=headers)

    return handle


def cut_short(status: int) -> Handler:
    """Promise 1000 bytes, send 16, hang up."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status)
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"message": "cut')
        assert request.transport is not None
        request.transport.close()
        return response

    return handle


def edit_request(asset: str = "development/images/a.jpg") -> str:
    prompt = {"imageUrl": asset, "prompt": "depth", "megapixels": "0.25", "num_outputs": 1}
    return json.dumps({"type": FEATURE_TYPE, "model": MODEL, "promptObject": prompt})


def success(uuid: str = "u-1", paths: Any = None, urls: Any = None, **record: Any) -> dict:
    """A SUCCESS answer (one image by default) with `record`'s extra fields."""
    return {
        "aiRecord": {
            "uuid": uuid,
            "status": "SUCCESS",
            "aiRecordDetail": {"resultObject": ["p0"] if paths is None else paths},
            "temporaryUrl": ["u0"] if urls is None else urls,
            **record,
        }
    }


async def edit_outcome(handler: Handler, limits: ResponseLimits | None = None) -> Any:
    """What one edit against `handler` ends in: its result, or the sweeper error it raised."""
    async with serve(handler) as base, aiohttp.ClientSession() as session:
        client = ApiClient(session, base, KEY, request_timeout_s=10, limits=limits)
        try:
            return await client.run_edit(edit_request(), num_outputs=1)
        except SweeperError as error:
            return error


def assert_error(outcome: Any, kind: type[BaseException], message: str) -> None:
    assert type(outcome) is kind, repr(outcome)
    assert str(outcome) == message


# --- the contract's error table, as exact errors -----------------------------------------

GATEWAY = "<html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (
            400,
            {"message": "guidance must be <= 20"},
            JobError,
            "the API refused the request (HTTP 400: guidance must be <= 20)",
        ),
        (
            402,
            {"message": "Payment required"},
            CreditsError,
            "the account is out of credits (HTTP 402: Payment required)",
        ),
        (
            409,
            {"message": "Insufficient credits"},
            CreditsError,
            "the account is out of credits (HTTP 409: Insufficient credits)",
        ),
        (
            500,
            {"message": "insufficient credits"},
            TransientError,
            "HTTP 500: insufficient credits",
        ),
        (
            401,
            {"message": "no"},
            AuthError,
            "the API rejected the key in ONEMIN_API_KEY (HTTP 401)",
        ),
        (
            404,
            {"message": "Asset does not exist"},
            UnknownAsset,
            "the API no longer knows the input image (HTTP 404: Asset does not exist)",
        ),
        (
            409,
            {"message": "asset not found"},
            JobError,
            "the API refused the request (HTTP 409: asset not found)",
        ),
        (500, {"message": "image not found"}, TransientError, "HTTP 500: image not found"),
        (408, {"message": "slow client"}, TransientError, "HTTP 408: slow client"),
        (503, "", TransientError, "HTTP 503: empty body"),
        (502, GATEWAY, TransientError, "HTTP 502: non-JSON gateway page"),
        (204, "", TransientError, "unexpected HTTP 204: empty body"),
        (
            429,
            {"message": "Too many requests"},
            RateLimited,
            "rate limited by the API (HTTP 429: Too many requests)",
        ),
    ],
)
def test_each_status_becomes_the_contracts_error_with_the_servers_words(
    status, body, kind, message
) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(SweeperError) as caught:
        interpret_answer(status, {}, text, KEY)
    assert_error(caught.value, kind, message)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"message": "m", "error": "e", "detail": "d"}', "m"),
        ('{"error": "e", "detail": "d"}', "e"),
        ('{"message": 5, "detail": "d"}', "d"),
        ('{"code": 7}', '{"code": 7}'),
        ("plain\n  text\twith   gaps", "plain text with gaps"),
        (f'{{"message": "bad key {KEY}"}}', "bad key ***"),
        ("", "empty body"),
    ],
)
def test_the_servers_words_are_its_first_text_field_on_one_line_without_the_key(
    text, words
) -> None:
    assert server_message(text, KEY) == words


@pytest.mark.parametrize(
    ("value", "depth"),
    [(5, 0), ([], 1), ({}, 1), ([[]], 2), ({"a": {"b": [1]}}, 3), ({"a": [[[]]], "b": 1}, 4)],
)
def test_json_depth_counts_nested_lists_and_objects(value, depth) -> None:
    assert json_depth(value) == depth


@pytest.mark.parametrize(
    ("text", "limit", "message"),
    [
        (f"oops {KEY}", 64, "the API answered 200 with a body that is not JSON: oops ***"),
        (
            "[" * 100_000 + "]" * 100_000,
            64,
            "the API answered 200 with JSON nested too deeply to read",
        ),
        (
            "[[[[]]]]",
            3,
            "the API answered 200 with JSON nested deeper than 3 levels (run.max_json_depth)",
        ),
    ],
)
def test_a_200_that_cannot_be_used_is_unanswered_with_its_reason_and_no_key(
    text, limit, message
) -> None:
    with pytest.raises(Unanswered) as caught:
        parse_json_answer(text, limit, KEY)
    assert str(caught.value) == message


def test_a_200_nested_up_to_the_limit_is_read_and_its_status_alone_does_not_make_it_json():
    assert parse_json_answer("[[[]]]", 3, KEY) == [[[]]]
    assert interpret_answer(200, {}, "[[[]]]", KEY) == [[[]]]
    with pytest.raises(Unanswered) as caught:
        interpret_answer(200, {}, f"oops {KEY}", KEY)
    assert str(caught.value) == "the API answered 200 with a body that is not JSON: oops ***"


# --- the shapes of an edit's answer ----------------------------------------------------


@pytest.mark.parametrize(
    ("detail", "message", "words"),
    [
        ({}, "quota exceeded", "quota exceeded"),
        ({"responseObject": {"error": f"key {KEY}"}}, None, '{"error": "key ***"}'),
        ({"responseObject": f"plain {KEY}"}, "ignored", "plain ***"),
        ({}, None, "no message"),
    ],
)
def test_a_record_that_is_not_success_fails_with_the_servers_words_and_its_credit(
    detail, message, words
) -> None:
    record = {"status": "FAILED", "aiRecordDetail": detail, "teamUser": {"usedCredit": 1234}}
    if message is not None:
        record["message"] = message
    with pytest.raises(RecordFailed) as caught:
        parse_edit_result({"aiRecord": record}, KEY, 1)
    assert str(caught.value) == f"the API recorded the edit as FAILED: {words}"
    assert caught.value.used_credit == 1234.0


@pytest.mark.parametrize("payload", [["aiRecord"], {"aiRecord": "x"}, None])
def test_an_answer_without_a_record_object_fails_the_job(payload) -> None:
    with pytest.raises(JobError) as caught:
        parse_edit_result(payload, KEY)
    assert_error(caught.value, JobError, "the API's answer has no aiRecord")


@pytest.mark.parametrize(
    ("paths", "urls", "expected"),
    [
        (["p0"], ["u0"], [(0, "p0", "u0")]),
        ([], [], [(0, "", "")]),
        (["p0", "p1"], "u0", [(0, "p0", "u0"), (1, "p1", "")]),
        (42, {"0": "u0"}, [(0, "", "")]),
        ([42, None, "p2"], [None, "u1", 7], [(0, "", ""), (1, "", "u1"), (2, "p2", "")]),
    ],
)
def test_without_num_outputs_every_listed_image_is_owed_and_odd_items_have_no_value(
    paths, urls, expected
) -> None:
    result = parse_edit_result(success(paths=paths, urls=urls), KEY)
    assert [(o.index, o.remote_path, o.url) for o in result.outputs] == expected
    assert result.surplus == 0


def test_a_record_without_uuid_has_an_empty_one_and_a_non_number_credit_is_unknown() -> None:
    payload = success(teamUser={"usedCredit": True})
    del payload["aiRecord"]["uuid"]
    result = parse_edit_result(payload, KEY, 1)
    assert (result.record_uuid, result.used_credit, result.surplus) == ("", None, 0)
    payload["aiRecord"]["teamUser"] = {"usedCredit": "12"}
    assert parse_edit_result(payload, KEY, 1).used_credit is None


@pytest.mark.parametrize(
    ("answer", "path"),
    [
        ({"fileContent": {"path": "fc"}, "asset": {"key": "ak"}}, "fc"),
        ({"fileContent": {"path": "fc"}}, "fc"),
        ({"asset": {"key": "ak"}}, "ak"),
        ({"fileContent": {"path": ""}, "asset": {"key": "ak"}}, "ak"),
    ],
)
def test_an_upload_answer_gives_file_content_path_else_asset_key(answer, path) -> None:
    assert _asset_path_from(answer, KEY) == path


def test_an_upload_answer_whose_path_is_not_text_is_transient_and_quoted_without_the_key():
    with pytest.raises(TransientError) as caught:
        _asset_path_from({"fileContent": {"path": 7}, "echo": KEY}, KEY)
    assert_error(
        caught.value,
        TransientError,
        'the upload answer has neither fileContent.path nor asset.key: {"fileContent": '
        '{"path": 7}, "echo": "***"}',
    )


def test_a_network_failure_is_named_in_one_line_without_the_key() -> None:
    assert describe_network_error(TimeoutError()) == "no answer before the request timed out"
    assert describe_network_error(ConnectionResetError()) == (
        "ConnectionResetError: ConnectionResetError"
    )
    assert describe_network_error(OSError(f"peer\nsent {KEY}"), KEY) == "OSError: peer sent ***"


# --- over real HTTP: uploads -------------------------------------------------------------


async def test_an_upload_sends_one_asset_field_with_the_files_name_type_bytes_and_key(tmp_path):
    odd = tmp_path / "astronaut.photo"
    odd.write_bytes(PHOTO.read_bytes())
    seen: list[tuple] = []

    async def record(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        [(name, field)] = list(form.items())
        assert isinstance(field, web.FileField)
        content_type = field.content_type.lower()
        seen.append((name, field.filename, content_type, field.file.read(), request.headers))
        return web.json_response({"fileContent": {"path": f"development/images/{len(seen)}"}})

    async with serve(record) as base, aiohttp.ClientSession() as session:
        client = ApiClient(session, base, KEY)
        assert await client.upload_asset(PHOTO) == "development/images/1"
        assert await client.upload_asset(odd) == "development/images/2"
    data = PHOTO.read_bytes()
    assert [s[:4] for s in seen] == [
        ("asset", "astronaut.jpg", "image/jpeg", data),
        ("asset", "astronaut.photo", "application/octet-stream", data),
    ]
    assert all(s[4]["API-KEY"] == KEY for s in seen)


@pytest.mark.parametrize("omit_file_content", [False, True])
async def test_an_upload_to_the_simulator_returns_the_path_that_holds_the_file(omit_file_content):
    config = SimulatorConfig(api_key=KEY, omit_file_content=omit_file_content)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        client = ApiClient(session, sim.base_url + "//", KEY)
        path = await client.upload_asset(PHOTO, load_input_image(PHOTO)[0].sha256)
        assert client.api_base == sim.base_url
    assert sim.state.assets == {path: PHOTO.read_bytes()}


async def test_the_api_base_keeps_its_path_and_loses_only_its_trailing_slashes():
    async with aiohttp.ClientSession() as session:
        client = ApiClient(session, "https://gateway.example/1minX//", KEY)
    assert client.api_base == "https://gateway.example/1minX"


async def test_a_file_changed_or_broken_since_planning_is_refused_before_any_upload(tmp_path):
    broken = tmp_path / "notes.jpg"
    broken.write_text("not an image")
    with pytest.raises(ImageProblem) as problem:
        load_input_image(broken)
    async with run_simulator(SimulatorConfig()) as sim, aiohttp.ClientSession() as session:
        client = ApiClient(session, sim.base_url, KEY)
        with pytest.raises(SpecError) as changed:
            await client.upload_asset(PHOTO, "0" * 64)
        with pytest.raises(SpecError) as unreadable:
            await client.upload_asset(broken)
        assert sim.state.counters["uploads"] == 0
    assert str(changed.value) == (
        f"{PHOTO}: changed since the run started (its sha256 is not the one its jobs were "
        "planned with); run the same command again to plan with the new file"
    )
    assert str(unreadable.value) == f"{broken}: {problem.value}"


async def test_an_upload_answer_without_a_path_is_transient_and_never_shows_the_key():
    async with (
        serve(answering(200, json.dumps({"echo": KEY}))) as base,
        aiohttp.ClientSession() as session,
    ):
        with pytest.raises(TransientError) as caught:
            await ApiClient(session, base, KEY).upload_asset(PHOTO)
    assert_error(
        caught.value,
        TransientError,
        'the upload answer has neither fileContent.path nor asset.key: {"echo": "***"}',
    )


# --- over real HTTP: edits ---------------------------------------------------------------


async def test_an_edit_sends_the_exact_json_as_application_json_with_the_key():
    seen: list[tuple] = []

    async def record(request: web.Request) -> web.StreamResponse:
        text = await request.text()
        seen.append((request.path, request.content_type, text, request.headers.get("API-KEY")))
        return web.json_response(success(paths=["p0", "p1"], urls=["u0", "u1"]))

    result = await edit_outcome(record)
    assert seen == [("/api/features", "application/json", edit_request(), KEY)]
    assert [(o.index, o.remote_path, o.url) for o in result.outputs] == [(0, "p0", "u0")]
    assert result.surplus == 1


async def test_an_edit_against_the_simulator_keeps_num_outputs_and_reads_the_record():
    extra = FaultRule("features", "extra_results", extra=9)
    config = SimulatorConfig(api_key=KEY, faults=[extra], tiny_images=True)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        client = ApiClient(session, sim.base_url, KEY)
        asset = await client.upload_asset(PHOTO)
        result = await client.run_edit(edit_request(asset), num_outputs=1)
        billed = sim.state.credits_used
    assert (len(result.outputs), result.surplus, result.used_credit) == (1, 9, float(billed))
    assert result.outputs[0].url.startswith(f"{sim.base_url}/storage/")
    assert result.outputs[0].remote_path in sim.state.produced


async def simulated_edit(*faults: FaultRule) -> Any:
    """Upload the photo to a simulator with `faults`, send one edit: its result or error."""
    config = SimulatorConfig(faults=list(faults))
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        client = ApiClient(session, sim.base_url, KEY)
        try:
            return await client.run_edit(edit_request(await client.upload_asset(PHOTO)))
        except SweeperError as error:
            return error


async def test_a_failed_record_from_the_server_keeps_its_words_without_the_key():
    failed = FaultRule("features", "record_failed", message=f"blocked for key {KEY}")
    assert_error(
        await simulated_edit(failed),
        RecordFailed,
        'the API recorded the edit as FAILED: {"error": "blocked for key ***"}',
    )


@pytest.mark.parametrize(
    ("rule", "kind", "message", "retry_after"),
    [
        (
            {"kind": "rate_limit", "retry_after": "7"},
            RateLimited,
            "rate limited by the API (HTTP 429: Too many requests)",
            7.0,
        ),
        (
            {"kind": "status", "status": 400, "message": "bad seed"},
            JobError,
            "the API refused the request (HTTP 400: bad seed)",
            None,
        ),
        (
            {"kind": "echo_key", "status": 400},
            JobError,
            "the API refused the request (HTTP 400: request from key *** refused; key=***)",
            None,
        ),
    ],
)
async def test_an_error_status_from_the_simulator_is_the_contracts_error(
    rule, kind, message, retry_after
):
    outcome = await simulated_edit(FaultRule("features", **rule))
    assert_error(outcome, kind, message)
    assert getattr(outcome, "retry_after", None) == retry_after


@pytest.mark.parametrize(
    ("status", "location", "target"),
    [(300, "http://elsewhere.example:8/steal", "elsewhere.example"), (308, "", "nowhere")],
)
async def test_a_redirect_is_refused_naming_its_target(status, location, target):
    redirect = FaultRule("features", "redirect", status=status, location=location)
    config = SimulatorConfig(faults=[redirect])
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        with pytest.raises(ApiRedirected) as caught:
            await ApiClient(session, sim.base_url, KEY).run_edit(edit_request())
    assert str(caught.value) == (
        f"the API at {sim.base_url} answered HTTP {status}, a redirect to {target}; sweeper "
        "never follows one, since the API key would go with it. Check ONEMIN_API_BASE"
    )


async def test_a_redirect_is_never_followed_so_the_key_goes_nowhere_else():
    visits: list[str] = []

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        visits.append(request.headers.get("API-KEY", ""))
        return web.json_response(success())

    async with serve(elsewhere) as other:
        outcome = await edit_outcome(answering(307, "", Location=f"{other}/steal"))
    assert type(outcome) is ApiRedirected and visits == []


# --- over real HTTP: what counts as answered, and the caps ---------------------------------


async def test_a_200_within_the_cap_is_read_whole_and_one_byte_more_is_unanswered():
    uuid = "u" * 200_000  # several chunks, so the count must add up across them
    body = json.dumps(success(uuid=uuid))
    exact = ResponseLimits(max_body_bytes=len(body))
    result = await edit_outcome(answering(200, body), exact)
    assert result.record_uuid == uuid
    tight = ResponseLimits(max_body_bytes=len(body) - 1)
    assert_error(
        await edit_outcome(answering(200, body), tight),
        Unanswered,
        f"the API's answer is over {len(body) - 1:,} bytes (run.max_response_mb); "
        "it may have been billed",
    )


async def test_a_200_deeper_than_the_runs_limit_or_not_json_is_unanswered_without_the_key():
    deep = ResponseLimits(max_json_depth=3)
    assert_error(
        await edit_outcome(answering(200, "[[[[]]]]"), deep),
        Unanswered,
        "the API answered 200 with JSON nested deeper than 3 levels (run.max_json_depth)",
    )
    assert_error(
        await edit_outcome(answering(200, f"oops {KEY}")),
        Unanswered,
        "the API answered 200 with a body that is not JSON: oops ***",
    )


async def test_an_error_status_is_an_answer_even_when_its_body_is_too_big_cut_or_garbled():
    small = ResponseLimits(max_body_bytes=100_000)
    assert_error(
        await edit_outcome(answering(500, b"x" * 300_000), small),
        TransientError,
        "HTTP 500: " + "x" * 300,
    )
    assert_error(await edit_outcome(cut_short(500)), TransientError, 'HTTP 500: {"message": "cut')
    assert_error(
        await edit_outcome(answering(500, b"\xff\xfe oops")),
        TransientError,
        "HTTP 500: \ufffd\ufffd oops",
    )


async def test_a_200_cut_short_is_unanswered():
    outcome = await edit_outcome(cut_short(200))
    assert type(outcome) is Unanswered
    assert str(outcome).startswith("ClientPayloadError: Response payload is not completed")


async def test_a_refused_connection_is_not_sent_and_a_reset_is_unanswered():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(NotSent) as refused:
            await ApiClient(session, f"http://127.0.0.1:{closed_port}", KEY).run_edit("{}")
    assert str(refused.value).startswith(
        f"ClientConnectorError: Cannot connect to host 127.0.0.1:{closed_port} "
    )
    reset = FaultRule("features", "reset")
    config = SimulatorConfig(faults=[reset])
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        with pytest.raises(Unanswered) as dropped:
            await ApiClient(session, sim.base_url, KEY).run_edit(edit_request())
    assert str(dropped.value) == "ServerDisconnectedError: Server disconnected"


def edit_timed_in_virtual_time(*, hold_the_only_connection: bool, **client: Any) -> tuple:
    """Send one edit to a server that never answers: (its error, virtual seconds it took)."""

    async def main() -> tuple:
        hang = FaultRule("features", "hang", times=2)
        loop = asyncio.get_running_loop()
        async with run_simulator(SimulatorConfig(faults=[hang])) as sim:
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                holder = None
                if hold_the_only_connection:
                    other = ApiClient(session, sim.base_url, KEY, request_timeout_s=3000)
                    holder = asyncio.ensure_future(other.run_edit(edit_request()))
                    while not sim.state.seen["features"]:  # noqa: ASYNC110 (a counter)
                        await asyncio.sleep(0)
                started = loop.time()
                outcome: tuple = (None, 0.0)
                try:
                    await ApiClient(session, sim.base_url, KEY, **client).run_edit(edit_request())
                except SweeperError as error:
                    outcome = (error, loop.time() - started)
                if holder is not None:
                    holder.cancel()
        return outcome

    loop = SocketVirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:  # the simulator's handlers still asleep in their hang
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


def test_no_answer_within_the_default_300_s_is_unanswered():
    error, waited = edit_timed_in_virtual_time(hold_the_only_connection=False)
    assert_error(error, Unanswered, "no answer before the request timed out")
    assert 300 <= waited < 301


def test_a_shorter_request_timeout_is_the_whole_wait():
    error, waited = edit_timed_in_virtual_time(hold_the_only_connection=False, request_timeout_s=12)
    assert_error(error, Unanswered, "no answer before the request timed out")
    assert 12 <= waited < 13


def test_waiting_30_s_for_a_connection_is_not_sent():
    error, waited = edit_timed_in_virtual_time(hold_the_only_connection=True)
    assert_error(error, NotSent, "no answer before the request timed out")
    assert 30 <= waited < 31


def test_waiting_for_a_connection_under_a_short_timeout_is_still_not_sent():
    error, _ = edit_timed_in_virtual_time(hold_the_only_connection=True, request_timeout_s=12)
    assert type(error) is NotSent


# --- retry.py: the policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (9, 5.0)]
)
def test_backoff_is_full_jitter_under_a_ceiling_that_doubles_up_to_the_cap(attempt, ceiling):
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=5.0)
    assert policy.backoff(attempt, random.Random(11)) == random.Random(11).uniform(0.0, ceiling)


def test_delay_is_the_servers_retry_after_clamped_at_zero_else_the_backoff():
    policy = RetryPolicy(base_delay_s=1.0)
    assert policy.delay(1, random.Random(5), 0.0) == 0.0
    assert policy.delay(1, random.Random(5), -3.0) == 0.0
    assert policy.delay(2, random.Random(5)) == random.Random(5).uniform(0.0, 2.0)


def test_retry_after_as_inf_a_zone_less_date_or_a_date_from_the_real_clock():
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("inf", now=now) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000", now=now) == 30.0
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 <= parse_retry_after(soon) <= 120


# --- retry.py: the loop ------------------------------------------------------------------


class RecordingPacer:
    """Hands out numbered tickets and records how each request that took one ended."""

    def __init__(self) -> None:
        self.issued = 0
        self.events: list[tuple] = []

    async def acquire(self) -> int:
        self.issued += 1
        return self.issued

    def slow_down(self, seconds: float) -> None:
        self.events.append(("slow_down", seconds))

    def on_success(self, ticket: int) -> None:
        self.events.append(("success", ticket))

    def on_failure(self, ticket: int) -> None:
        self.events.append(("failure", ticket))

    def on_rate_limited(self, ticket: int, retry_after: float | None, pause_s: float) -> None:
        self.events.append(("rate_limited", ticket, retry_after, pause_s))

    def snapshot(self) -> dict[str, object]:
        return {}


def attempts(max_attempts: int = 5, stopping: bool = False) -> Attempts:
    policy = RetryPolicy(max_attempts=max_attempts, base_delay_s=1.0, max_delay_s=60.0)
    return Attempts(policy, RecordingPacer(), FakeClock(), random.Random(3), lambda: stopping)


def scripted(*outcomes: object) -> tuple[Callable[[int], Awaitable[object]], list[int]]:
    """An operation that ends attempt n as outcomes[n-1] (the last one repeats)."""
    tried: list[int] = []

    async def operation(attempt: int) -> object:
        tried.append(attempt)
        outcome = outcomes[min(len(tried), len(outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return operation, tried


def jitter(*attempt_numbers: int) -> list[float]:
    """The backoffs `attempts()` draws, in order, for these failed attempts."""
    rng, policy = random.Random(3), attempts().policy
    return [policy.backoff(n, rng) for n in attempt_numbers]


async def test_a_paced_call_reports_each_attempt_to_the_pacer_by_its_ticket():
    loop = attempts()
    operation, tried = scripted(
        TransientError("503"), RateLimited("slow", 12.0), RateLimited("slow", None), "done"
    )
    assert await loop.call(operation, paced=True) == "done"
    _, pause_3 = jitter(1, 3)
    assert tried == [1, 2, 3, 4]
    assert loop.limiter.events == [
        ("failure", 1),
        ("rate_limited", 2, 12.0, 12.0),
        ("rate_limited", 3, None, pause_3),
        ("success", 4),
    ]
    assert loop.clock.sleeps == jitter(1)  # a 429 pauses the pool, not this caller


async def test_an_unpaced_call_waits_out_a_429_itself_exactly_as_long_as_asked():
    loop = attempts()
    operation, tried = scripted(RateLimited("slow", 3.0), RateLimited("slow", None), "done")
    assert await loop.call(operation, paced=False) == "done"
    assert (tried, loop.limiter.issued, loop.limiter.events) == ([1, 2, 3], 0, [])
    assert loop.clock.sleeps == [3.0, *jitter(2)]


async def test_unanswered_is_sent_again_by_default_and_raised_at_once_when_resending_is_off():
    loop = attempts()
    operation, tried = scripted(Unanswered("maybe billed"), "done")
    assert await loop.call(operation, paced=True) == "done"
    assert tried == [1, 2]
    operation, tried = scripted(TransientError("503"), Unanswered("maybe billed"), "never")
    with pytest.raises(Unanswered, match="maybe billed"):
        await attempts().call(operation, paced=True, resend_unanswered=False)
    assert tried == [1, 2]


@pytest.mark.parametrize(
    "last", [RateLimited("slow down", 1.0), TransientError("reset by peer")], ids=repr
)
async def test_giving_up_says_how_many_attempts_and_carries_the_last_failure(last):
    loop = attempts(max_attempts=5)
    operation, tried = scripted(TransientError("503"), last)
    with pytest.raises(GaveUp) as caught:
        await loop.call(operation, paced=True, max_attempts=2)
    assert str(caught.value) == f"gave up after 2 attempts: {last}"
    assert caught.value.last is last and tried == [1, 2]
    assert loop.clock.sleeps == jitter(1)  # none after the last attempt


async def test_a_stopping_run_sends_no_paid_request_but_downloads_go_on():
    loop = attempts(stopping=True)
    operation, tried = scripted("image")
    with pytest.raises(InterruptedRun) as caught:
        await loop.call(operation, paced=True)
    assert str(caught.value) == "the run is stopping"
    assert tried == [] and loop.limiter.events == [("failure", 1)]
    assert await loop.call(operation, paced=False) == "image" and tried == [1]

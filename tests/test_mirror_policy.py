"""The failover rules of :class:`~secure_import.transport.mirrors.MirrorSet`, unit by unit.

Each source is a scripted double (no network): these tests pin down which
failure sends a request to the next source under each policy, which never
does, what the error is when every source fails, and the order of sources
after one could not be reached.  The same rules run end to end over real
HTTPS in tests/test_mirrors.py and against nginx in tests/test_nginx_mirrors.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from secure_import.errors import (
    AllSourcesFailedError,
    ConfigError,
    ConnectionFailedError,
    DeadlineError,
    EncodingRefusedError,
    HTTPStatusError,
    InsecureURLError,
    RedirectRefusedError,
    RequestBuildError,
    TLSError,
    TooLargeError,
    TransportError,
)
from secure_import.transport.base import FetchStats, Response
from secure_import.transport.mirrors import (
    DOWN_FOR,
    MAX_MIRRORS,
    MirrorSet,
    check_mirrors,
    served_host,
)

ORIGIN = "https://origin.example/repo/"
M1 = "https://m1.example/copy/"
M2 = "https://m2.example:8443/"

Outcome = Response | TransportError | RequestBuildError


class Source:
    """A source that answers from a script: a response, or an error to raise."""

    def __init__(self, base: str, *outcomes: Outcome) -> None:
        self.base = base
        self.outcomes = list(outcomes)
        self.asked: list[str] = []
        self.stats = FetchStats()
        self.closed = False
        self.extra: list[dict[str, object]] = []
        self.patience: list[float | None] = []

    def get(
        self,
        url: str,
        *,
        cap: int,
        etag: str | None = None,
        what: str = "file",
        waiting: Callable[[], None] | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        patience: float | None = None,
    ) -> Response:
        assert url.startswith(self.base), "a source was asked for a URL off its own base"
        self.asked.append(url)
        self.extra.append({"deadline": deadline, "cancel": cancel})
        self.patience.append(patience)
        self.stats.requests += 1
        if waiting is not None:
            waiting()
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return Response(url, outcome.status, outcome.body, outcome.etag)

    def close(self) -> None:
        self.closed = True


def ok(base: str = "") -> Response:
    return Response(base, 200, b"signed bytes", None)


def status(code: int) -> HTTPStatusError:
    return HTTPStatusError("refused", check="http-status", got=code)


def connect() -> ConnectionFailedError:
    return ConnectionFailedError("refused", check="connect")


def mirror_set(
    *sources: Source, fallback: str = "on-error", clock: Callable[[], float] | None = None
) -> MirrorSet:
    pairs = [(s.base, s) for s in sources]
    if clock is None:
        return MirrorSet(ORIGIN, pairs, fallback=fallback)
    return MirrorSet(ORIGIN, pairs, fallback=fallback, clock=clock)


@pytest.mark.parametrize(
    "failure",
    [
        connect(),
        TLSError("bad certificate", check="tls"),
        DeadlineError("slow", check="timeout"),
        DeadlineError("drip", check="throughput"),
        status(500),
        status(503),
        status(403),
        status(404),
        status(410),
        RedirectRefusedError("off origin", check="redirect-origin"),
        EncodingRefusedError("gzip", check="content-encoding"),
    ],
    ids=lambda e: f"{e.code}-{e.got or e.check}",
)
def test_on_error_any_transport_failure_of_the_origin_goes_to_the_mirror(
    failure: TransportError,
) -> None:
    origin, mirror = Source(ORIGIN, failure), Source(M1, ok())
    answer = mirror_set(origin, mirror).get(ORIGIN + "pkg/a.py", cap=100)
    assert answer.url == M1 + "pkg/a.py"  # the URL that served the body
    assert origin.asked == [ORIGIN + "pkg/a.py"] and mirror.asked == [M1 + "pkg/a.py"]


@pytest.mark.parametrize("code", [404, 410])
def test_on_not_found_a_missing_resource_goes_to_the_mirror(code: int) -> None:
    origin, mirror = Source(ORIGIN, status(code)), Source(M1, ok())
    answer = mirror_set(origin, mirror, fallback="on-not-found").get(ORIGIN + "x", cap=9)
    assert answer.url == M1 + "x"


@pytest.mark.parametrize(
    "failure",
    [status(500), status(503), connect(), TLSError("bad", check="tls")],
    ids=lambda e: f"{e.code}-{e.got or e.check}",
)
def test_on_not_found_any_other_failure_is_the_answer_and_the_mirror_is_not_asked(
    failure: TransportError,
) -> None:
    origin, mirror = Source(ORIGIN, failure), Source(M1, ok())
    with pytest.raises(type(failure)) as caught:
        mirror_set(origin, mirror, fallback="on-not-found").get(ORIGIN + "x", cap=9)
    assert caught.value is failure  # one attempt: its own error, unchanged
    assert mirror.asked == []


@pytest.mark.parametrize("fallback", ["on-error", "on-not-found"])
@pytest.mark.parametrize(
    "failure",
    [
        TooLargeError("longer than signed", check="size"),
        DeadlineError("import over", check="import-deadline"),
        DeadlineError("cancelled", check="cancelled"),
        RequestBuildError("bad header", check="request-header"),
    ],
    ids=lambda e: e.check,
)
def test_never_failed_over_under_any_policy(fallback: str, failure: Exception) -> None:
    """A body longer than its cap is the wrong bytes (refused by the caller as
    a length mismatch, like tampering: never replaced by a mirror's); the
    import's own deadline and cancellation end every attempt; a request that
    cannot be built is a local fault."""
    origin, mirror = Source(ORIGIN, failure), Source(M1, ok())  # type: ignore[arg-type]
    with pytest.raises(type(failure)):
        mirror_set(origin, mirror, fallback=fallback).get(ORIGIN + "x", cap=9)
    assert mirror.asked == []


def test_all_sources_failing_is_one_error_listing_each_attempt_in_order() -> None:
    sources = (
        Source(ORIGIN, connect()),
        Source(M1, status(503)),
        Source(M2, TLSError("bad certificate", check="tls")),
    )
    with pytest.raises(AllSourcesFailedError) as caught:
        mirror_set(*sources).get(ORIGIN + "secure-import-manifest.json", cap=9, what="manifest")
    err = caught.value
    assert err.code == "all-sources-failed"
    assert isinstance(err, TransportError)  # the offline fallback still applies to it
    assert [url for url, _ in err.attempts] == [
        ORIGIN + "secure-import-manifest.json",
        M1 + "secure-import-manifest.json",
        M2 + "secure-import-manifest.json",
    ]
    assert [what for _, what in err.attempts] == [
        "connection-failed (connect)",
        "http-status 503 (http-status)",
        "tls-error (tls)",
    ]
    text = str(err)
    for url, what in err.attempts:
        assert f"{url}: {what}" in text
    assert "manifest" in text and "on-error" in text
    assert err.as_dict()["attempts"] == [{"url": u, "error": w} for u, w in err.attempts]


def test_every_answering_source_saying_not_found_is_a_404_callers_understand() -> None:
    """A missing bundle, root or pointer keeps its meaning (per-file fallback,
    end of a rotation walk, fetch the manifest): the error stays a 404."""
    sources = (Source(ORIGIN, status(404)), Source(M1, connect()), Source(M2, status(410)))
    with pytest.raises(HTTPStatusError) as caught:
        mirror_set(*sources).get(ORIGIN + "bundles/pkg.bin", cap=9)
    assert caught.value.got == 404
    assert M1 + "bundles/pkg.bin" in str(caught.value) and "410" in str(caught.value)


def test_a_404_mixed_with_a_server_error_is_not_called_missing() -> None:
    sources = (Source(ORIGIN, status(404)), Source(M1, status(500)))
    with pytest.raises(AllSourcesFailedError):
        mirror_set(*sources).get(ORIGIN + "x", cap=9)


def test_a_request_outside_the_repository_url_is_refused_before_any_source() -> None:
    origin, mirror = Source(ORIGIN, ok()), Source(M1, ok())
    with pytest.raises(RedirectRefusedError):
        mirror_set(origin, mirror).get("https://origin.example/other/x", cap=9)
    assert origin.asked == [] and mirror.asked == []


def test_an_unreachable_source_is_asked_last_for_a_while_then_first_again() -> None:
    now = [1000.0]
    origin = Source(ORIGIN, connect(), ok(), ok())
    mirror = Source(M1, ok())
    mirrors = mirror_set(origin, mirror, clock=lambda: now[0])
    mirrors.get(ORIGIN + "a", cap=9)
    assert origin.asked == [ORIGIN + "a"] and mirror.asked == [M1 + "a"]
    mirrors.get(ORIGIN + "b", cap=9)  # the dead origin costs no second timeout
    assert origin.asked == [ORIGIN + "a"] and mirror.asked == [M1 + "a", M1 + "b"]
    now[0] += DOWN_FOR + 1
    mirrors.get(ORIGIN + "c", cap=9)
    assert origin.asked[-1] == ORIGIN + "c" and mirror.asked[-1] == M1 + "b"


def test_a_source_marked_down_is_still_asked_when_every_other_fails() -> None:
    now = [0.0]
    origin = Source(ORIGIN, connect(), ok())
    mirror = Source(M1, ok(), status(503))
    mirrors = mirror_set(origin, mirror, clock=lambda: now[0])
    mirrors.get(ORIGIN + "a", cap=9)  # origin down, mirror serves
    answer = mirrors.get(ORIGIN + "b", cap=9)  # mirror 503: the origin is asked after all
    assert answer.url == ORIGIN + "b"
    assert mirror.asked[-1] == M1 + "b"


def test_waiting_is_called_once_per_request_whatever_the_attempts() -> None:
    calls: list[int] = []
    sources = (Source(ORIGIN, connect()), Source(M1, status(502)), Source(M2, ok()))
    mirror_set(*sources).get(ORIGIN + "x", cap=9, waiting=lambda: calls.append(1))
    assert calls == [1]


def test_the_import_deadline_and_cancel_event_reach_every_source() -> None:
    cancel = threading.Event()
    origin, mirror = Source(ORIGIN, connect()), Source(M1, ok())
    mirror_set(origin, mirror).get(ORIGIN + "x", cap=9, deadline=12.5, cancel=cancel)
    assert origin.extra == mirror.extra == [{"deadline": 12.5, "cancel": cancel}]


def test_stats_sum_over_the_sources_and_close_closes_each() -> None:
    origin, mirror = Source(ORIGIN, connect()), Source(M1, ok())
    mirrors = mirror_set(origin, mirror)
    mirrors.get(ORIGIN + "x", cap=9)
    assert mirrors.stats.requests == 2
    mirrors.close()
    assert origin.closed and mirror.closed


# -- the mirror list ------------------------------------------------------------


def test_mirrors_are_normalised_https_urls_in_the_order_given() -> None:
    mirrors, fallback = check_mirrors(ORIGIN, ["https://M1.example:443/copy", M2], "on-error")
    assert mirrors == (M1, M2) and fallback == "on-error"


@pytest.mark.parametrize(
    ("mirrors", "fallback", "error", "check"),
    [
        (["http://m1.example/"], "on-error", InsecureURLError, None),
        (["https://user:pw@m1.example/"], "on-error", InsecureURLError, None),
        ([M1, "https://m1.example/copy/"], "on-error", ConfigError, "mirrors"),
        ([ORIGIN], "on-error", ConfigError, "mirrors"),
        (
            [f"https://m{i}.example/" for i in range(MAX_MIRRORS + 1)],
            "on-error",
            ConfigError,
            "mirrors",
        ),
        ([M1], "always", ConfigError, "fallback"),
        ([M1], "on-hash-mismatch", ConfigError, "fallback"),
        (M1, "on-error", ConfigError, "mirrors"),
    ],
)
def test_a_bad_mirror_list_or_policy_is_refused(
    mirrors: list[str], fallback: str, error: type[Exception], check: str | None
) -> None:
    with pytest.raises(error) as caught:
        check_mirrors(ORIGIN, mirrors, fallback)
    if check is not None:
        assert getattr(caught.value, "check", None) == check


def test_an_s3_repository_takes_no_https_mirrors() -> None:
    with pytest.raises(ConfigError):
        check_mirrors("s3://bucket/prefix/", [M1], "on-error")


def test_the_served_host_names_a_non_default_port() -> None:
    assert served_host(M1 + "x") == "m1.example"
    assert served_host(M2 + "x") == "m2.example:8443"


def test_object_storage_is_named_by_its_bucket() -> None:
    assert served_host("s3://bucket/prefix/secure-import-manifest.json") == "s3://bucket"


def test_on_error_a_silent_source_is_given_up_sooner_unless_it_is_the_last() -> None:
    """``failover_after`` caps every wait on a source another source can
    follow; the last source asked keeps the full bounds."""
    timeout = DeadlineError("silent", check="failover-after")
    sources = (Source(ORIGIN, timeout), Source(M1, timeout), Source(M2, ok()))
    mirrors = MirrorSet(ORIGIN, [(s.base, s) for s in sources], failover_after=3.0)
    assert mirrors.get(ORIGIN + "x", cap=9).url == M2 + "x"
    assert [s.patience for s in sources] == [[3.0], [3.0], [None]]


def test_on_not_found_a_slow_source_keeps_the_full_bounds() -> None:
    """Under on-not-found a timeout is the answer, not a reason to go on: no
    source is cut short."""
    sources = (Source(ORIGIN, status(404)), Source(M1, ok()))
    mirrors = MirrorSet(
        ORIGIN, [(s.base, s) for s in sources], fallback="on-not-found", failover_after=3.0
    )
    mirrors.get(ORIGIN + "x", cap=9)
    assert [s.patience for s in sources] == [[None], [None]]

"""Each algorithm end to end on the memory store (SPEC.md section 3): a real sluice in front
of upstream.py, admissions timed against the clock the store reads."""
import math
import time

import pytest

from conftest import request
from limits_support import (LATE, concurrently, config, connect, now, poll_until_allowed,
                            remaining, targets, timed, window_start)


def one_limit(algorithm, rate, key="route", extra=""):
    return config(f"""\
  - name: r
    limits:
      - name: l
        algorithm: {algorithm}
        rate: {rate}
        key: {key}
{extra}""")


def statuses(results):
    return [r.status for _, _, r in results]


def test_fixed_window_admits_n_per_aligned_window(sluice_factory, upstream):
    period = 2.0
    s = sluice_factory(one_limit("fixed_window", "5/2s", key='"query:k"'), upstream=upstream)
    # The sequence must fall inside one window; a scheduler stall past its end makes the
    # attempt say nothing, so it is repeated under a fresh key.
    for attempt in range(3):
        start, end = window_start(period, 1.5)
        results = [timed(s.port, f"/fw?k={attempt}&i={i}") for i in range(7)]
        if results[-1][1] < end:
            break
    else:
        pytest.fail("no attempt fitted in one window")
    assert statuses(results) == [200] * 5 + [429] * 2
    assert [remaining(r, "l") for _, _, r in results] == [4, 3, 2, 1, 0, 0, 0]
    for sent, answered, r in results[5:]:
        # Denied until the window ends, rounded up to whole seconds.
        assert math.ceil(end - answered) <= int(r.header("Retry-After")) <= math.ceil(end - sent)
        assert r.json()["retry_after"] == int(r.header("Retry-After"))
    for sent, answered, r in results:
        assert math.ceil(end - answered) <= int(r.header("X-RateLimit-Reset")) <= math.ceil(end - sent)

    # Admission resumes when the next window begins, and not before.
    last_denied, sent, answered, r = poll_until_allowed(s.port, f"/fw?k={attempt}&i=p")
    assert answered >= end
    assert last_denied is None or last_denied < end
    assert sent < end + LATE
    assert remaining(r, "l") == 4
    more = [timed(s.port, f"/fw?k={attempt}&i=q{i}") for i in range(5)]
    if more[-1][1] < end + period:
        assert statuses(more) == [200] * 4 + [429]
    seen = [t for t in targets(upstream.log()) if f"k={attempt}&" in t]
    assert seen[:6] == [f"/fw?k={attempt}&i={i}" for i in range(5)] + [f"/fw?k={attempt}&i=p"]
    assert f"/fw?k={attempt}&i=5" not in seen and f"/fw?k={attempt}&i=6" not in seen


def test_sliding_window_admits_again_exactly_when_the_oldest_ages_out(sluice_factory, upstream):
    period = 2.0
    s = sluice_factory(one_limit("sliding_window", "3/2s"), upstream=upstream)
    admitted = []
    for i in range(3):
        admitted.append(timed(s.port, f"/sw/{i}"))
        time.sleep(0.5)
    assert statuses(admitted) == [200] * 3
    assert [remaining(r, "l") for _, _, r in admitted] == [2, 1, 0]
    # The window is exact: with 3 in (now - 2s, now] the 4th is denied until the oldest,
    # admitted at a0, leaves it, i.e. for a0 + 2 - now, rounded up.
    sent, answered, r = timed(s.port, "/sw/denied")
    assert r.status == 429
    (s0, a0, _), (s1, a1, _) = admitted[0][:3], admitted[1][:3]
    assert math.ceil(s0 + period - answered) <= int(r.header("Retry-After")) \
        <= math.ceil(a0 + period - sent)

    # Denials are not recorded, so polling does not push the limit away.
    last_denied, sent, answered, r = poll_until_allowed(s.port, "/sw/3")
    assert answered >= s0 + period, "admitted before the oldest request left the window"
    assert last_denied is not None and last_denied < a0 + period
    assert sent < a0 + period + LATE
    assert remaining(r, "l") == 0
    # One place freed, one taken: the next waits for the second oldest.
    sent, answered, r = timed(s.port, "/sw/denied")
    if answered < s1 + period:
        assert r.status == 429
    last_denied, sent, answered, r = poll_until_allowed(s.port, "/sw/4")
    assert answered >= s1 + period
    assert sent < a1 + period + LATE
    assert targets(upstream.log()) == ["/sw/0", "/sw/1", "/sw/2", "/sw/3", "/sw/4"]


def test_sliding_window_counter_weighs_the_previous_window(sluice_factory, upstream):
    period, n = 2.0, 4
    s = sluice_factory(one_limit("sliding_window_counter", "4/2s"), upstream=upstream)
    start, end = window_start(period, 1.5)
    first = [timed(s.port, f"/swc/{i}") for i in range(n + 1)]
    assert first[-1][1] < end, "the machine stalled for over a second"
    assert statuses(first) == [200] * n + [429]
    assert [remaining(r, "l") for _, _, r in first] == [3, 2, 1, 0, 0]
    # This window is spent: denied until the next begins.
    sent, answered, r = first[-1]
    assert math.ceil(end - answered) <= int(r.header("Retry-After")) <= math.ceil(end - sent)

    # In the next window the estimate is 4·(1 − e/P) + curr: one request at once, then
    # the k-th admission only once e > k·P/4, as the previous window's weight decays.
    last_denied, sent, answered, r = poll_until_allowed(s.port, "/swc/a0")
    assert answered >= end and (last_denied is None or last_denied < end)
    for k in (1, 2):
        edge = end + k * period / n
        sent, answered, r = timed(s.port, f"/swc/d{k}")
        if answered < edge:
            assert r.status == 429
            assert r.header("Retry-After") == "1"
        last_denied, sent, answered, r = poll_until_allowed(s.port, f"/swc/a{k}")
        assert answered >= edge, f"admission {k} came before e > {k}P/4"
        assert sent < edge + LATE
    assert targets(upstream.log()) == [f"/swc/{i}" for i in range(n)] + ["/swc/a0", "/swc/a1", "/swc/a2"]


def test_token_bucket_bursts_then_refills_at_the_rate(sluice_factory, upstream):
    # 2/s: one token every 500 ms, so that seven requests on new connections fit inside
    # one tick on a loaded machine (at 4/s they sometimes did not, and a refilled token
    # admitted the seventh).
    tick = 0.5
    s = sluice_factory(one_limit("token_bucket", "2/s", extra="        burst: 6"), upstream=upstream)
    burst = [timed(s.port, f"/tb/{i}") for i in range(7)]
    assert statuses(burst) == [200] * 6 + [429]
    assert [remaining(r, "l") for _, _, r in burst] == [5, 4, 3, 2, 1, 0, 0]
    assert burst[-1][2].header("Retry-After") == "1"
    s0, a0 = burst[0][:2]
    # The first token was taken at d0 in [s0, a0]; the k-th new one is whole at d0 + k·tick,
    # however promptly the earlier ones were claimed.
    for k in (1, 2, 3):
        last_denied, sent, answered, r = poll_until_allowed(s.port, f"/tb/refill{k}")
        assert answered >= s0 + k * tick, f"token {k} came early"
        assert sent < a0 + k * tick + LATE
    # Full again at d0 + 9·tick; idle two ticks more: the bucket holds `burst` tokens, no more.
    time.sleep(max(0.0, a0 + 11 * tick - now()))
    again = [timed(s.port, f"/tb/again{i}") for i in range(7)]
    assert statuses(again) == [200] * 6 + [429]
    assert len(upstream.log()) == 6 + 3 + 6


def test_leaky_bucket_spaces_requests_at_the_upstream(sluice_factory, upstream):
    spacing = 0.5  # 2/s
    s = sluice_factory(one_limit("leaky_bucket", "2/s", extra="        burst: 3"), upstream=upstream)
    # Six at once, on connections opened beforehand so that they arrive together: one
    # leaves now, three wait their turn in the queue, the last two find it full.
    conns = [connect(s.port) for _ in range(6)]
    try:
        sent = now()
        for i, c in enumerate(conns):
            c.send(request("GET", f"/lb/{i}", [("Connection", "close")]))

        def answer(c):
            r = c.read_response()
            return now(), r
        results = concurrently([lambda c=c: answer(c) for c in conns])
    finally:
        for c in conns:
            c.close()
    codes = sorted(r.status for _, r in results)
    assert codes == [200] * 4 + [429] * 2
    denied = [i for i, (_, r) in enumerate(results) if r.status == 429]
    for i in denied:
        answered, r = results[i]
        assert answered - sent < 2 * spacing, "a denial must not wait in the queue"
        assert r.header("Retry-After") == "1"
        assert r.json()["limit"] == "l"
    assert max(t for t, r in results if r.status == 200) >= sent + 3 * spacing

    log = upstream.wait_log(4)
    assert sorted(targets(log)) == sorted(f"/lb/{i}" for i in range(6) if i not in denied)
    times = sorted(e["time"] for e in log)
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    # Departures are exactly P/N apart; arrivals at the upstream add scheduling noise.
    for i, t in enumerate(times):
        assert t - times[0] >= i * spacing - 0.2, f"gaps {gaps}"
    assert all(g >= spacing - 0.2 for g in gaps), f"gaps {gaps}"
    assert times[-1] - times[0] <= 3 * spacing + LATE, f"gaps {gaps}"


def test_leaky_bucket_without_delay_admits_at_once_until_the_queue_is_full(sluice_factory, upstream):
    spacing = 0.5  # 2/s
    s = sluice_factory(one_limit("leaky_bucket", "2/s", extra="        burst: 3\n        delay: false"),
                       upstream=upstream)
    results = [timed(s.port, f"/nd/{i}") for i in range(5)]
    assert statuses(results) == [200] * 4 + [429]
    assert all(answered - sent < spacing for sent, answered, _ in results), "nodelay must not hold"
    assert [remaining(r, "l") for _, _, r in results] == [3, 2, 1, 0, 0]
    assert results[-1][2].header("Retry-After") == "1"
    times = [e["time"] for e in upstream.wait_log(4)]
    assert times[-1] - times[0] < spacing, "admitted requests were held"
    assert targets(upstream.log()) == [f"/nd/{i}" for i in range(4)]
    # The slots are still taken: the next place frees one spacing after the first.
    s0, a0 = results[0][:2]
    last_denied, sent, answered, r = poll_until_allowed(s.port, "/nd/later")
    assert answered >= s0 + spacing
    assert sent < a0 + spacing + LATE

"""The verdict of scripts/soak.sh (scripts/soak/check.py): its flatness rule on sampled
series, and the other reasons it fails a run. No processes: check.py reads files."""
import importlib.util
import pathlib
import random

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("soak_check", ROOT / "scripts/soak/check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

# A 30-minute run sampled every 10 s, as soak.sh takes it.
TS = [10.0 * i for i in range(181)]


def noisy(base, sd, seed, slope=0.0):
    rnd = random.Random(seed)
    return [base + slope * t + rnd.gauss(0, sd) for t in TS]


def test_linear_fit_recovers_a_line():
    intercept, slope, sd = check.linear_fit([0, 1, 2, 3], [5, 7, 9, 11])
    assert (intercept, slope) == pytest.approx((5, 2))
    assert sd == pytest.approx(0)


@pytest.mark.parametrize("seed", range(20))
def test_noise_alone_is_flat(seed):
    # RSS wandering by about a mebibyte around 20 MiB, no trend.
    f = check.flatness(TS, noisy(20480, 1024, seed), check.FLOORS["rss_kb"])
    assert f["ok"], f


def test_a_steady_leak_grows():
    # 2 KiB a second (7 MiB an hour, some 8 bytes a request at the soak's load) under
    # 100 KiB of noise.
    f = check.flatness(TS, noisy(20480, 100, 1, slope=2), check.FLOORS["rss_kb"])
    assert not f["ok"], f
    assert f["rise"] == pytest.approx(2 * 900, rel=0.1)


def test_a_leak_below_the_floor_passes():
    # 0.5 KiB a second: 450 KiB over the second half of 30 minutes, under the 1 MiB floor
    # (a longer run catches it: the rise grows with the run, the floor does not).
    assert check.flatness(TS, noisy(20480, 100, 1, slope=0.5), check.FLOORS["rss_kb"])["ok"]
    long_ts = [10.0 * i for i in range(6 * 360 + 1)]
    ys = [20480 + 0.5 * t for t in long_ts]
    assert not check.flatness(long_ts, ys, check.FLOORS["rss_kb"])["ok"]


def test_a_leak_in_noise_is_caught_once_it_outgrows_the_noise():
    # 4 KiB a second is 3.5 MiB over the second half; noise of 1 MiB allows 2 MiB.
    f = check.flatness(TS, noisy(20480, 1024, 2, slope=4), check.FLOORS["rss_kb"])
    assert not f["ok"], f


def test_growth_in_the_first_half_only_is_warm_up():
    # Caches and arenas filling for ten minutes, then level.
    ys = [min(t, 600) * 10 + 5000 for t in TS]
    assert check.flatness(TS, ys, check.FLOORS["rss_kb"])["ok"]


def test_fds_leaking_one_a_minute_grow():
    ys = [40 + int(t // 60) for t in TS]
    assert not check.flatness(TS, ys, check.FLOORS["fds"])["ok"]


def test_a_falling_series_is_flat():
    assert check.flatness(TS, [10000 - t for t in TS], 1)["ok"]


def test_too_few_samples_cannot_be_judged():
    f = check.flatness([0, 10, 20], [1, 1000, 100000], 1)
    assert f["ok"] and f["samples"] < 3


def write_run(tmp, rss, statuses="soak: status 200 100\nsoak: status 429 5\n", stderr=""):
    csv = tmp / "series.csv"
    csv.write_text("t_s,rss_kb,fds,connections_active,memory_keys\n" + "".join(
        f"{t:.0f},{r:.0f},40,16,2000\n" for t, r in zip(TS, rss)))
    wrk = tmp / "wrk.txt"
    wrk.write_text(statuses + "soak: bad429 0\nsoak: errors connect 0 read 0 write 0 timeout 0\n")
    err = tmp / "sluice.stderr"
    err.write_text(stderr)
    return ["--csv", str(csv), "--wrk", str(wrk), "--stderr", str(err), "--exit-code", "0"]


def test_a_clean_run_passes(tmp_path, capsys):
    assert check.main(write_run(tmp_path, noisy(20480, 300, 3))) == 0
    assert "soak: passed" in capsys.readouterr().out


def test_a_leaking_run_fails(tmp_path, capsys):
    assert check.main(write_run(tmp_path, noisy(20480, 100, 4, slope=3))) == 1
    assert "FAIL: rss_kb grows" in capsys.readouterr().out


def test_an_unexpected_status_fails(tmp_path, capsys):
    args = write_run(tmp_path, noisy(20480, 300, 5), statuses="soak: status 200 100\nsoak: status 502 1\n")
    assert check.main(args) == 1
    assert "unexpected statuses from wrk: {502: 1}" in capsys.readouterr().out


def test_a_sanitizer_report_fails(tmp_path, capsys):
    args = write_run(tmp_path, noisy(20480, 300, 6),
                     stderr="==1==ERROR: LeakSanitizer: detected memory leaks\n")
    assert check.main(args) == 1
    assert "sanitizer reports" in capsys.readouterr().out

"""reload.watch (SPEC.md sections 2 and 7): a change of the configuration file on disk reloads
as SIGHUP does, debounced; in place, by rename, and by a Kubernetes ConfigMap's symlink swap.

The only sleeps are the debounce's bound, where a test shows that nothing happens."""
import os
import signal
import time

from conftest import wait_until
from kube_volume import AtomicVolume
from limits_support import config, send

# Long enough past the debounce for a reload that would happen to have happened.
QUIET = 1.5


def watch_config(rate, watch="true", debounce="100ms"):
    return config("""\
  - name: r
    limits:
      - name: l
        algorithm: fixed_window
        rate: %s
        key: client_ip
""" % rate, extra=f"reload:\n  watch: {watch}\n  debounce: {debounce}\n")


def limit(s):
    return send(s.port, "/a").header("X-RateLimit-Limit")


def reloads(s, result):
    return s.metrics().value("sluice_config_reloads_total", result=result)


def wait_reloads(s, success, failure=0):
    wait_until(lambda: (reloads(s, "success"), reloads(s, "failure")) == (success, failure),
               what=f"{success} successful and {failure} failed reload(s)")


def write_in_place(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_an_edit_in_place_reloads_once(sluice_factory, upstream):
    s = sluice_factory(watch_config("3/1m"), upstream=upstream)
    assert limit(s) == "3"
    write_in_place(s.config_path, s.render(watch_config("5/1m")))
    wait_reloads(s, 1)
    assert limit(s) == "5"
    time.sleep(QUIET)
    assert (reloads(s, "success"), reloads(s, "failure")) == (1, 0)


def test_a_rename_over_the_file_reloads_once(sluice_factory, upstream):
    s = sluice_factory(watch_config("3/1m"), upstream=upstream)
    # As editors save: a new file, renamed over the old, its mode set after.
    tmp = s.config_path + ".swp"
    write_in_place(tmp, s.render(watch_config("7/1m")))
    os.rename(tmp, s.config_path)
    os.chmod(s.config_path, 0o600)
    wait_reloads(s, 1)
    assert limit(s) == "7"
    time.sleep(QUIET)
    assert (reloads(s, "success"), reloads(s, "failure")) == (1, 0)


def test_a_sighup_before_the_debounce_makes_the_only_reload(sluice_factory, upstream):
    s = sluice_factory(watch_config("3/1m", debounce="1s"), upstream=upstream)
    s.reload(watch_config("6/1m", debounce="1s"))
    wait_reloads(s, 1)
    assert limit(s) == "6"
    time.sleep(1 + QUIET)
    assert (reloads(s, "success"), reloads(s, "failure")) == (1, 0)


def test_touch_or_the_same_bytes_reload_nothing(sluice_factory, upstream):
    s = sluice_factory(watch_config("3/1m"), upstream=upstream)
    os.utime(s.config_path)
    s.write_config(s.yaml_text)
    time.sleep(QUIET)
    assert (reloads(s, "success"), reloads(s, "failure")) == (0, 0)


def test_a_configmap_symlink_swap_reloads(sluice_factory, upstream, tmp_path):
    cm = AtomicVolume(str(tmp_path / "configmap"))
    s = sluice_factory(watch_config("3/1m"), upstream=upstream, config_file=cm)
    assert limit(s) == "3"
    s.write_config(watch_config("9/1m"))
    wait_reloads(s, 1)
    assert limit(s) == "9"
    # The watch follows the file into its next directory.
    s.write_config(watch_config("11/1m"))
    wait_reloads(s, 2)
    assert limit(s) == "11"
    assert sorted(os.listdir(cm.root)) == ["..2026_12_07_22_00_00.%06d" % cm.version, "..data",
                                           "sluice.yaml"]


def test_a_broken_file_keeps_the_configuration_until_fixed(sluice_factory, upstream):
    s = sluice_factory(watch_config("3/1m"), upstream=upstream)
    write_in_place(s.config_path, "routes: [")
    wait_reloads(s, 0, 1)
    assert limit(s) == "3"
    assert "reload failed; keeping the running configuration" in s.stderr_text()
    write_in_place(s.config_path, s.render(watch_config("4/1m")))
    wait_reloads(s, 1, 1)
    assert limit(s) == "4"


def test_without_watch_nothing_reloads_and_a_reload_turns_it_on_and_off(sluice_factory,
                                                                        upstream):
    s = sluice_factory(watch_config("3/1m", watch="false"), upstream=upstream)
    write_in_place(s.config_path, s.render(watch_config("5/1m", watch="false")))
    time.sleep(QUIET)
    assert reloads(s, "success") == 0
    assert limit(s) == "3"

    s.reload(watch_config("5/1m"))
    wait_reloads(s, 1)
    assert limit(s) == "5"
    write_in_place(s.config_path, s.render(watch_config("6/1m")))
    wait_reloads(s, 2)
    assert limit(s) == "6"

    # A change that turns the watch off is the last one it sees.
    write_in_place(s.config_path, s.render(watch_config("7/1m", watch="false")))
    wait_reloads(s, 3)
    write_in_place(s.config_path, s.render(watch_config("8/1m", watch="false")))
    time.sleep(QUIET)
    assert reloads(s, "success") == 3
    assert limit(s) == "7"
    s.signal(signal.SIGHUP)
    wait_reloads(s, 4)
    assert limit(s) == "8"

"""Downloads against a real HTTP server on localhost: resume, verification, errors, pins."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from harness import download as download_module
from harness import progress
from harness.download import Pins, download, fetch_pinned, normalise_sha256
from harness.errors import DownloadError, HostOffline
from tests.fixtures.http_server import closed_port
from tests.fixtures.terminal import drawn, fake_terminal

CONTENT = os.urandom(300_000)
SHA = hashlib.sha256(CONTENT).hexdigest()
HINT = "set native_tools: paths in devices.yaml for an offline lab"


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch):
    monkeypatch.setattr(download_module, "RETRY_PAUSE_S", 0.0)


def leftovers(folder):
    """Files a failed download left behind (the lock file is the cache's, not the transfer's)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def test_full_download_then_served_from_the_cache(file_server, tmp_path):
    file_server.files["/model.tflite"] = CONTENT
    got = download(file_server.url("/model.tflite"), sha256=SHA, destination=tmp_path, name="model.tflite")
    assert (got.path, got.sha256, got.size_bytes, got.fetched, got.resumed_from) == (
        tmp_path / "model.tflite",
        SHA,
        300_000,
        True,
        0,
    )
    assert got.path.read_bytes() == CONTENT
    assert leftovers(tmp_path) == ["model.tflite"]
    again = download(
        file_server.url("/model.tflite"), sha256=SHA.upper(), destination=tmp_path, name="model.tflite"
    )
    assert (again.fetched, again.sha256) == (False, SHA)
    assert len(file_server.seen) == 1


def test_a_cut_transfer_resumes_with_a_range_request(file_server, tmp_path):
    file_server.files["/m.bin"] = CONTENT
    file_server.cuts["/m.bin"] = [100_000]
    got = download(file_server.url("/m.bin"), sha256=SHA, destination=tmp_path, name="m.bin")
    assert got.path.read_bytes() == CONTENT
    # requests reads in blocks: the bytes of the block that the cut broke are read again
    assert 0 < got.resumed_from <= 100_000
    assert [(s.range, s.if_range) for s in file_server.seen] == [
        (None, None),
        (f"bytes={got.resumed_from}-", file_server.etag(CONTENT)),
    ]
    assert leftovers(tmp_path) == ["m.bin"]


def test_an_interrupted_download_keeps_its_bytes_and_the_next_call_resumes(file_server, tmp_path):
    file_server.files["/m.bin"] = CONTENT
    file_server.cuts["/m.bin"] = [120_000]
    url = file_server.url("/m.bin")
    with pytest.raises(DownloadError) as failed:
        download(url, sha256=SHA, destination=tmp_path, name="m.bin", attempts=1, hint=HINT)
    message = str(failed.value)
    kept = (tmp_path / "m.bin.partial").stat().st_size
    assert 0 < kept <= 120_000
    assert message.startswith(f"{url}: the transfer failed after 1 attempt(s): the connection was cut")
    assert (
        f"{kept} bytes are kept in {tmp_path / 'm.bin.partial'}: run the same command again to resume"
        in message
    )
    assert message.endswith(HINT)
    assert not (tmp_path / "m.bin").exists()
    got = download(url, sha256=SHA, destination=tmp_path, name="m.bin")
    assert (got.resumed_from, got.path.read_bytes() == CONTENT) == (kept, True)
    assert file_server.seen[-1].range == f"bytes={kept}-"


def test_a_connection_dropped_before_the_answer_is_retried_not_called_offline(file_server, tmp_path):
    file_server.files["/m.bin"] = CONTENT
    file_server.drops["/m.bin"] = 1
    got = download(file_server.url("/m.bin"), sha256=SHA, destination=tmp_path, name="m.bin")
    assert (got.fetched, len(file_server.seen)) == (True, 2)
    file_server.drops["/m.bin"] = 1
    with pytest.raises(DownloadError) as failed:
        download(
            file_server.url("/m.bin"), sha256=SHA, destination=tmp_path / "again", name="m.bin", attempts=1
        )
    assert not isinstance(failed.value, HostOffline)
    assert "the transfer failed after 1 attempt(s): the connection was dropped (" in str(failed.value)


def test_a_server_that_ignores_range_restarts_cleanly(file_server, tmp_path):
    file_server.files["/m.bin"] = CONTENT
    file_server.cuts["/m.bin"] = [150_000]
    url = file_server.url("/m.bin")
    with pytest.raises(DownloadError):
        download(url, sha256=SHA, destination=tmp_path, name="m.bin", attempts=1)
    file_server.ignore_range = True
    got = download(url, sha256=SHA, destination=tmp_path, name="m.bin")
    assert file_server.seen[-1].range is not None  # asked, answered with the whole file
    assert (got.resumed_from, got.size_bytes, got.sha256) == (0, 300_000, SHA)
    assert got.path.read_bytes() == CONTENT


def test_a_file_changed_since_the_partial_is_fetched_whole_not_mixed(file_server, tmp_path):
    """If-Range: the server sends the new version whole, so a pin never records a mix of two."""
    old, new = CONTENT, os.urandom(300_000)
    file_server.files["/tool"] = old
    file_server.cuts["/tool"] = [100_000]
    url = file_server.url("/tool")
    with pytest.raises(DownloadError):
        download(url, sha256=None, destination=tmp_path, name="tool", attempts=1)
    file_server.files["/tool"] = new
    got = download(url, sha256=None, destination=tmp_path, name="tool")
    assert file_server.seen[-1].if_range == file_server.etag(old)
    assert (got.resumed_from, got.sha256) == (0, hashlib.sha256(new).hexdigest())


def test_a_wrong_hash_is_refused_and_nothing_is_kept(file_server, tmp_path):
    file_server.files["/m.bin"] = CONTENT
    url = file_server.url("/m.bin")
    wrong = "ab" * 32
    with pytest.raises(DownloadError) as failed:
        download(
            url, sha256=wrong, destination=tmp_path, name="m.bin", mismatch_fix="update models.yaml's sha256"
        )
    assert str(failed.value) == (
        f"{url}: sha256 mismatch: expected {wrong}, got {SHA}; the 300000 downloaded bytes were deleted. "
        "Update models.yaml's sha256"
    )
    assert leftovers(tmp_path) == []


def test_a_cached_file_damaged_at_rest_is_fetched_again(file_server, tmp_path):
    file_server.files["/m.bin"] = CONTENT
    (tmp_path / "m.bin").write_bytes(b"damaged")
    got = download(file_server.url("/m.bin"), sha256=SHA, destination=tmp_path, name="m.bin")
    assert (got.fetched, got.path.read_bytes() == CONTENT) == (True, True)


def test_http_404_names_the_url_status_and_hint(file_server, tmp_path):
    url = file_server.url("/missing")
    with pytest.raises(DownloadError) as failed:
        download(url, sha256=SHA, destination=tmp_path, name="missing", hint=HINT)
    assert str(failed.value) == f"{url}: the server answered HTTP 404 Not Found; check the URL; {HINT}"
    assert not isinstance(failed.value, HostOffline)
    assert len(file_server.seen) == 1  # a 404 is not retried
    assert leftovers(tmp_path) == []


def test_http_500_is_retried_then_reported(file_server, tmp_path):
    file_server.status["/m.bin"] = 500
    url = file_server.url("/m.bin")
    with pytest.raises(DownloadError) as failed:
        download(url, sha256=SHA, destination=tmp_path, name="m.bin", attempts=3)
    assert str(failed.value) == (
        f"{url}: the transfer failed after 3 attempt(s): the server answered HTTP 500 Internal Server Error; "
        "nothing was kept"
    )
    assert len(file_server.seen) == 3


def test_an_unreachable_port_is_a_one_line_offline_error(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/benchmark_model"
    with pytest.raises(HostOffline) as failed:
        download(url, sha256=SHA, destination=tmp_path, name="benchmark_model", hint=HINT)
    assert (
        str(failed.value) == f"{url}: host is offline or the URL is unreachable: connection refused; {HINT}"
    )
    assert leftovers(tmp_path) == []


def test_a_name_that_does_not_resolve_is_an_offline_error(tmp_path):
    url = "http://edgelab-test.invalid/benchmark_model"
    with pytest.raises(HostOffline) as failed:
        download(url, sha256=SHA, destination=tmp_path, name="benchmark_model", hint=HINT)
    assert str(failed.value) == (
        f"{url}: host is offline or the URL is unreachable: the host name does not resolve (DNS); {HINT}"
    )


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "no-length"])
def test_a_file_over_the_size_limit_is_refused_and_nothing_is_kept(file_server, tmp_path, send_length):
    file_server.files["/big"] = CONTENT
    file_server.send_length = send_length
    url = file_server.url("/big")
    with pytest.raises(DownloadError) as failed:
        download(url, sha256=SHA, destination=tmp_path, name="big", max_bytes=200_000)
    message = str(failed.value)
    assert message.startswith(f"{url}: the file is ")
    assert "over the limit of 200000 bytes; nothing was kept" in message
    size = int(message.split("the file is ")[1].split(" ", maxsplit=1)[0])
    assert (size == 300_000) if send_length else (200_000 < size <= 300_000)
    assert leftovers(tmp_path) == []


def test_without_content_length_the_whole_body_is_read(file_server, tmp_path):
    file_server.files["/m.bin"] = CONTENT
    file_server.send_length = False
    got = download(file_server.url("/m.bin"), sha256=SHA, destination=tmp_path, name="m.bin")
    assert got.path.read_bytes() == CONTENT


@pytest.mark.parametrize(
    ("url", "sha256", "name", "expected"),
    [
        ("ftp://host/x", SHA, "x", "ftp://host/x: only http:// and https:// URLs can be downloaded"),
        ("http://h/x", SHA, "../x", "http://h/x: file name '../x' must be a plain name, not a path"),
        ("http://h/x", "abc", "x", "http://h/x: sha256 must be 64 hexadecimal characters (got 'abc')"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(tmp_path, url, sha256, name, expected):
    with pytest.raises(DownloadError) as failed:
        download(url, sha256=sha256, destination=tmp_path, name=name)
    assert str(failed.value) == expected


def test_normalise_sha256_accepts_pasted_forms():
    assert normalise_sha256(f"sha256:{SHA.upper()} ", "x") == SHA


def test_pin_on_first_fetch_then_a_changed_file_is_refused(file_server, tmp_path):
    file_server.files["/tool"] = CONTENT
    url = file_server.url("/tool")
    pins = Pins(tmp_path / "pins.json")
    first = fetch_pinned(url, cache=tmp_path, name="tool", pins=pins)
    assert first.path == tmp_path / SHA / "tool"
    assert first.path.read_bytes() == CONTENT
    recorded = json.loads((tmp_path / "pins.json").read_text())["pins"][url]
    assert (recorded["sha256"], recorded["size_bytes"]) == (SHA, 300_000)
    assert not (tmp_path / ".incoming").exists() or not any((tmp_path / ".incoming").rglob("tool*"))

    # pinned and cached: no request at all
    requests_before = len(file_server.seen)
    assert fetch_pinned(url, cache=tmp_path, name="tool", pins=pins).fetched is False
    assert len(file_server.seen) == requests_before

    # the server's file changes; a cache without the file must refuse it
    changed = os.urandom(300_000)
    file_server.files["/tool"] = changed
    first.path.unlink()
    with pytest.raises(DownloadError) as failed:
        fetch_pinned(url, cache=tmp_path, name="tool", pins=pins)
    message = str(failed.value)
    assert message.startswith(
        f"{url}: sha256 mismatch: expected {SHA}, got {hashlib.sha256(changed).hexdigest()}; "
        "the 300000 downloaded bytes were deleted. The file at this URL changed since it was pinned on "
    )
    assert f"delete its entry from {tmp_path / 'pins.json'} to pin the new file" in message
    assert leftovers(tmp_path / SHA) == []
    assert pins.get(url).sha256 == SHA  # the pin is not moved by a refused file


def test_an_explicit_sha256_wins_over_no_pin_and_records_none(file_server, tmp_path):
    file_server.files["/tool"] = CONTENT
    pins = Pins(tmp_path / "pins.json")
    got = fetch_pinned(file_server.url("/tool"), cache=tmp_path, name="tool", pins=pins, sha256=SHA)
    assert got.path == tmp_path / SHA / "tool"
    assert pins.all() == {}


def test_an_unreadable_pins_file_says_how_to_recover(tmp_path):
    path = tmp_path / "pins.json"
    path.write_text("{not json")
    with pytest.raises(DownloadError) as failed:
        Pins(path).get("http://h/x")
    assert str(failed.value).startswith(f"{path}: the pins file is unreadable (")
    assert str(failed.value).endswith("delete it to pin again on next fetch")


# -- progress ------------------------------------------------------------------------------------


def test_progress_is_drawn_only_on_a_terminal_and_never_under_ci(tmp_path):
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal, (tmp_path / "log").open("w") as log_file:
        assert progress.progress_enabled(terminal, {}) is True
        assert progress.progress_enabled(terminal, {"CI": "true"}) is False
        assert progress.progress_enabled(terminal, {"CI": "false"}) is True
        assert progress.progress_enabled(log_file, {}) is False
    os.close(leader)


def test_a_download_on_a_terminal_draws_its_bar(file_server, tmp_path, monkeypatch):
    file_server.files["/m.bin"] = CONTENT
    leader = fake_terminal(monkeypatch)
    download(file_server.url("/m.bin"), sha256=SHA, destination=tmp_path, name="m.bin", label="model m.bin")
    bar = drawn(leader)
    os.close(leader)
    assert "model m.bin" in bar
    assert "/293k" in bar  # the total: 300,000 bytes in KiB, as tqdm scales them


def test_a_download_off_a_terminal_draws_nothing(file_server, tmp_path, capsys, monkeypatch):
    file_server.files["/m.bin"] = CONTENT
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    download(file_server.url("/m.bin"), sha256=SHA, destination=tmp_path, name="m.bin", label="model m.bin")
    assert capsys.readouterr().err == ""

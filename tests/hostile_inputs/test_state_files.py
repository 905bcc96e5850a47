"""State that outlives a run, named after a device: health files (quarantine) must not collide or
escape their folder whatever the device is called."""

from __future__ import annotations

from harness import health

NAMES = ["a b", "a_b", "a/b", "a\\b", "../escape", "..", ".", "ünï", "x" * 300, "a_b+0123456789abcdef"]


def test_health_files_of_similar_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELAB_HEALTH_DIR", str(tmp_path))
    files = {name: health._file(name) for name in NAMES}
    assert len(set(files.values())) == len(NAMES)
    assert all(path.parent == tmp_path and len(path.name) < 255 for path in files.values())
    for _ in range(health.QUARANTINE_AFTER):
        health.record("a b", False, "disk full")
    assert health.status("a b")["quarantined"] is True
    assert [health.status(n)["quarantined"] for n in ("a_b", "a/b")] == [False, False]
    assert health.release("a b") is True and health.status("a b")["quarantined"] is False
    assert sorted(p.parent for p in tmp_path.rglob("*")) == []  # released: nothing left, nothing outside


def test_a_plain_name_keeps_its_existing_state_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELAB_HEALTH_DIR", str(tmp_path))
    assert health._file("pixel8") == tmp_path / "pixel8.json"

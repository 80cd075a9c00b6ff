"""Saved runs: atomic writes, concurrent saves, corrupt and foreign files, lookup by name and id."""

import json
import multiprocessing
import os

import pytest

from pytest_clever.runs import files
from pytest_clever.runs.storage import Storage, StorageError, check_name

from .records import GIT, make_record

pytestmark = pytest.mark.usefixtures("no_git")


def test_save_then_find_by_latest_name_id_and_path(tmp_path):
    store = Storage(tmp_path)
    first = store.save([make_record(mean=0.5)], "main", git={"commit": "abc", "dirty": False})
    second = store.save([make_record(mean=0.4)], "feature", git={})
    assert first != second and first.exists() and second.exists()
    assert store.find("latest").path == second
    assert store.find("main").records[0].mean == 0.5
    run = store.read(first)
    assert run.git == {"commit": "abc", "dirty": False}
    assert run.environment["python"] and run.created
    assert store.find(run.id[:20]).path == first
    assert store.find(str(first)).id == run.id
    with pytest.raises(StorageError, match="no saved run named 'nope'.*names: feature, main"):
        store.find("nope")


def test_saved_file_has_schema_and_metadata(tmp_path):
    path = Storage(tmp_path).save([make_record()], "main")
    data = json.loads(path.read_text())
    assert data["schema"] == 5 and data["kind"] == "pytest-clever-run" and data["name"] == "main"
    assert {"commit", "dirty"} <= set(data["git"])  # from files.git_info (stubbed: no git needed)
    assert data["git"] == GIT
    assert {"torch", "python", "pytest_clever"} <= set(data["environment"])


def test_a_layout_3_file_reads_unchanged_as_layout_4(tmp_path):
    # Layout 4 only adds optional fields (fingerprints, capped, interval_kind, partial): a layout-3 file reads
    # as it is, while a reader of layout 3 refuses a layout-4 file by its schema number.
    path = Storage(tmp_path).save([make_record(results=[{"score": 0.5}] * 3)], "main")
    data = json.loads(path.read_text())
    data["schema"] = 3
    path.write_text(json.dumps(data))
    run = Storage(tmp_path).read(path)
    assert run.schema == 3 and run.problems == () and run.records == (make_record(results=[{"score": 0.5}] * 3),)


def test_a_name_with_a_later_run_resolves_to_its_newest_run(tmp_path):
    store = Storage(tmp_path)
    store.save([make_record(mean=0.5)], "main")
    newest = store.save([make_record(mean=0.6)], "main")
    assert store.find("main").path == newest


def test_corrupt_and_foreign_files_are_named_and_skipped(tmp_path):
    store = Storage(tmp_path)
    good = store.save([make_record()], "main")
    (tmp_path / "broken.json").write_text('{"schema": 1, "kind": "pytest-clever-run", "id": ')
    (tmp_path / "other.json").write_text(json.dumps({"benchmarks": []}))
    (tmp_path / "future.json").write_text(json.dumps({"kind": "pytest-clever-run", "schema": 99}))
    runs, problems = store.runs()
    assert [r.path for r in runs] == [good]
    assert len(problems) == 3
    assert any("broken.json" in p and "not a readable JSON" in p for p in problems)
    assert any("other.json" in p and "not a pytest-clever run file" in p for p in problems)
    assert any("future.json" in p and "schema 99" in p for p in problems)
    assert store.find("latest").path == good
    with pytest.raises(StorageError, match="broken.json"):
        store.read(tmp_path / "broken.json")


def test_a_failed_write_leaves_the_previous_baseline_intact(tmp_path, monkeypatch):
    store = Storage(tmp_path)
    good = store.save([make_record(mean=0.5)], "main")
    before = good.read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(files.os, "replace", crash)
    with pytest.raises(OSError, match="injected"):
        store.save([make_record(mean=0.1)], "main")
    monkeypatch.undo()
    assert good.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # no temp file left behind
    assert store.find("main").records[0].mean == 0.5


def test_a_writer_killed_mid_write_leaves_no_partial_run(tmp_path):
    store = Storage(tmp_path)
    good = store.save([make_record(mean=0.5)], "main")
    # A killed writer leaves at most its unique temp file, which readers never pick up.
    (tmp_path / ".clever-abc123.tmp").write_text('{"schema": 1, "kind": "pytest-clever-run", "rec')
    runs, problems = store.runs()
    assert [r.path for r in runs] == [good] and problems == []


def _save_many(root, worker):
    store = Storage(root)
    for i in range(5):
        store.save([make_record(nodeid=f"t.py::test_{worker}_{i}")], f"w{worker}", git={})


def test_concurrent_saves_never_lose_or_corrupt_an_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    runs, problems = Storage(tmp_path).runs()
    assert problems == [] and len(runs) == 20
    assert len({r.records[0].nodeid for r in runs}) == 20
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("name", ["", "latest", "a/b", "x" * 65, "with space"])
def test_bad_run_names_are_rejected(name):
    with pytest.raises(StorageError, match="invalid run name"):
        check_name(name)


def test_empty_or_missing_storage(tmp_path):
    store = Storage(tmp_path / "nothing-here")
    assert store.runs() == ([], [])
    with pytest.raises(StorageError, match="no saved runs"):
        store.find("latest")


@pytest.mark.parametrize("name", ["main\n", "x.json", "X.JSON", "\nmain"])
def test_names_that_cannot_be_found_again_are_rejected(name):
    # A newline would end up in the file name; "x.json" is saved but a lookup reads it as a path.
    with pytest.raises(StorageError, match="invalid run name"):
        check_name(name)


def test_incomplete_runs_are_never_latest_nor_found_by_name(tmp_path):
    store = Storage(tmp_path)
    good = store.save([make_record(mean=0.5)], "main")
    cut = store.save([make_record(mean=0.1)], "main", incomplete="interrupted (KeyboardInterrupt)")
    assert json.loads(cut.read_text())["incomplete"] == "interrupted (KeyboardInterrupt)"
    assert store.find("latest").path == good
    assert store.find("main").path == good
    # Asked for by id or path it is returned, with a problem naming what it is.
    by_id = store.find(cut.name.split("_")[0])
    assert by_id.path == cut and by_id.incomplete.startswith("interrupted")
    assert any("is incomplete (interrupted" in p for p in by_id.problems)
    assert any("is incomplete" in p for p in store.find(str(cut)).problems)
    only = Storage(tmp_path / "only")
    only.save([make_record()], "nightly", incomplete="internal error")
    with pytest.raises(StorageError, match="no complete saved run named 'nightly'.*incomplete .internal error"):
        only.find("nightly")
    with pytest.raises(StorageError, match="no complete saved run in .*incomplete"):
        only.find("latest")


def test_a_name_whose_file_has_a_newer_schema_says_so(tmp_path):
    store = Storage(tmp_path)
    good = store.save([make_record()], "main")
    future = tmp_path / "20991231T000000000000Z-abcdef_future.json"
    future.write_text(json.dumps({"kind": "pytest-clever-run", "schema": 99, "records": []}))
    with pytest.raises(
        StorageError, match="no complete saved run named 'future'.*future.json: schema 99 is not supported"
    ):
        store.find("future")
    # latest falls back to the newest readable run, and names the file it skipped.
    latest = store.find("latest")
    assert latest.path == good
    assert any("skipped file" in p and "schema 99" in p for p in latest.problems)


def test_saved_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = Storage(tmp_path).save([make_record()], "main")
        files.write_json(tmp_path / "out.json", {"a": 1})
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "out.json").stat().st_mode & 0o777) == oct(0o644)


def test_stale_temp_files_of_crashed_writers_are_removed_on_the_next_save(tmp_path):
    stale, fresh = tmp_path / ".clever-dead01.tmp", tmp_path / ".clever-live01.tmp"
    stale.write_text('{"partial')
    fresh.write_text('{"partial')
    hour_ago = os.path.getmtime(stale) - 3600
    os.utime(stale, (hour_ago, hour_ago))
    Storage(tmp_path).save([make_record()], "main")
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer still at work


def test_a_partial_run_never_shadows_a_whole_run_of_the_same_name(tmp_path):
    store = Storage(tmp_path)
    whole = store.save([make_record(mean=0.5)], "main")
    part = store.save([make_record(mean=0.1)], "main", partial="-k test_two")
    assert json.loads(part.read_text())["partial"] == "-k test_two"
    passed_over = f"run {store.read(part).id} is newer but partial (-k test_two): not used"
    for ref in ("main", "latest"):
        found = store.find(ref)
        assert found.path == whole and found.partial is None
        assert any(passed_over in p for p in found.problems)
    by_id = store.find(store.read(part).id)
    assert by_id.path == part and any("is partial (-k test_two)" in p for p in by_id.problems)
    # Only partial runs under a name: the newest one, said so.
    store.save([make_record(mean=0.2)], "feature", partial="--deselect t.py::test_one")
    only = store.find("feature")
    assert only.partial == "--deselect t.py::test_one"
    assert any("no run of the whole suite is saved under this name" in p for p in only.problems)

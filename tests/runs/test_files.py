"""Output-file helpers: git metadata with and without a checkout, atomic JSON writes."""

import json
import shutil
import subprocess

import pytest

from pytest_clever.runs.files import environment, git_info, write_json


def test_git_info_outside_a_checkout_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_info(tmp_path) == {}


def test_git_info_in_a_checkout_has_commit_branch_and_dirty_flag(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run(["git", *env, "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    info = git_info(tmp_path)
    assert len(info["commit"]) == 40 and info["branch"] == "trunk" and info["dirty"] is False
    (tmp_path / "f").write_text("2")
    assert git_info(tmp_path)["dirty"] is True


def test_write_json_and_environment(tmp_path):
    write_json(tmp_path / "sub" / "x.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "sub" / "x.json").read_text()) == {"a": [1, 2]}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.json"]
    assert {"pytest_clever", "torch", "numpy", "scipy", "python", "platform", "machine"} == set(environment())

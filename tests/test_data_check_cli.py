"""`counterfeit data check` and the check that opens every `counterfeit train`."""

import json
import shutil

import pytest


@pytest.fixture
def leaking_data(synth_data, tmp_path):
    """The synth set with one training photo copied into test: a leak."""
    root = tmp_path / "data"
    shutil.copytree(synth_data, root)
    source = sorted((root / "train" / "genuine").rglob("*.jpg"))[0]
    copy = root / "test" / "genuine" / "copied.jpg"
    shutil.copy(source, copy)
    return root, source.relative_to(root).as_posix(), copy.relative_to(root).as_posix()


def test_clean_data_exits_0(run_cli, synth_data):
    code, out, _ = run_cli("data", "check", synth_data)
    assert code == 0 and "0 error(s), 0 warning(s)" in out


def test_errors_exit_1_and_json_lists_them(run_cli, leaking_data, tmp_path):
    root, source, copy = leaking_data
    code, out, _ = run_cli("data", "check", root, "--json", "--report", tmp_path / "report")
    assert code == 1
    findings = json.loads(out)["findings"]
    leaks = [f for f in findings if f["severity"] == "error" and f["check"] == "duplicates"]
    assert len(leaks) == 1 and set(leaks[0]["files"]) == {source, copy}
    assert (tmp_path / "report" / "audit.json").is_file() and (tmp_path / "report" / "report.html").is_file()


def test_bad_arguments_exit_2(run_cli, tmp_path):
    code, _, err = run_cli("data", "check", tmp_path / "missing")
    assert code == 2 and "no such folder" in err
    code, _, _ = run_cli("data", "frobnicate")
    assert code == 2


def test_train_refuses_a_leaking_dataset_naming_the_files(run_cli, leaking_data, tmp_path):
    root, source, copy = leaking_data
    code, _, err = run_cli("train", root, "--out", tmp_path / "run", "--recipe", "classifier", "--epochs", "1", "--image-size", "64x48")
    assert code == 2
    assert source in err and copy in err and "leak" in err
    assert "--allow-data-errors" in err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_allow_data_errors_trains_and_records_the_audit(run_cli, leaking_data, tmp_path):
    root, _, _ = leaking_data
    code, _, _ = run_cli("train", root, "--out", tmp_path / "run", "--recipe", "classifier", "--epochs", "1", "--image-size", "64x48",
                         "--allow-data-errors")
    assert code == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["extra"]["data_audit"]["errors"] == 1

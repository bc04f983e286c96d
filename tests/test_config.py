import dataclasses
from pathlib import Path

import pytest
import yaml

from medical_r1 import config
from medical_r1.config import ConfigError
from medical_r1.config import set_dotted
from tests.conftest import REPO


def write(tmp_path, overrides):
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def config_classes():
    return [cls for cls in vars(config).values() if dataclasses.is_dataclass(cls) and cls.__module__ == config.__name__]


def test_the_dataclasses_hold_no_defaults():
    """One set of defaults: conf/config.yaml (composed into params.yaml); medical_r1/sections.py and config.py only describe and check."""
    with_default = [f"{cls.__name__}.{f.name}" for cls in config_classes() for f in dataclasses.fields(cls)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_default == []


def test_a_missing_key_is_named(tmp_path):
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    del tree["train"]["max_steps"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=r"^train\.max_steps: missing; params.yaml must set every key"):
        config.load(path)


RECIPES = sorted(p.stem for p in (REPO / "conf/recipe").glob("*.yaml"))


def compose(tmp_path, *overrides) -> Path:
    """params.yaml as `dvc exp run -S ...` composes it from conf/ (DVC's own Hydra call)."""
    out = tmp_path / "params.yaml"
    config.compose(list(overrides), out)
    return out


def test_composing_the_defaults_gives_the_committed_params_yaml(tmp_path):
    assert compose(tmp_path).read_bytes() == (REPO / "params.yaml").read_bytes()


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_into_valid_params(tmp_path, recipe):
    params = config.load(compose(tmp_path, f"recipe={recipe}"))
    if recipe != "embedded":
        assert params != config.load(REPO / "params.yaml"), f"recipe {recipe} changes nothing"


def test_the_reference_recipe_is_the_r1_medical_one(tmp_path):
    params = config.load(compose(tmp_path, "recipe=r1_medical_en"))
    train, lora = params.train, params.lora
    assert params.model.name == "unsloth/DeepSeek-R1-Distill-Llama-8B"
    assert (params.data.source, params.data.config) == ("hf:FreedomIntelligence/medical-o1-reasoning-SFT", "en")
    assert (lora.r, lora.alpha, lora.dropout, len(lora.target_modules)) == (16, 16, 0.0, 7)
    assert (train.load_in_4bit, train.per_device_train_batch_size, train.gradient_accumulation_steps) == (True, 2, 4)
    assert (train.max_steps, train.learning_rate, train.warmup_steps, train.weight_decay) == (60, 2e-4, 5, 0.01)
    assert (train.lr_scheduler_type, train.max_seq_length, params.seed) == ("linear", 2048, 3407)
    fast = config.load(compose(tmp_path, "recipe=fast_gpu")).train
    assert (fast.load_in_4bit, fast.per_device_train_batch_size, fast.gradient_accumulation_steps) == (False, 8, 1)
    assert fast.gradient_checkpointing == "auto" and fast.max_steps == 60


@pytest.mark.parametrize("recipe", ["r1_medical_en", "r1_medical_zh", "fast_gpu"])
def test_the_r1_recipes_score_medqa_medmcqa_and_pubmedqa_as_published(tmp_path, recipe):
    """`dvc exp run -S recipe=r1_medical_en` scores three sets, each the split papers report, with its published size,
    at a 2,048-token budget, greedy (the Chinese recipe scores the same English sets)."""
    evaluation = config.load(compose(tmp_path, f"recipe={recipe}")).eval
    assert evaluation.mcq == ["medqa", "medmcqa", "pubmedqa"]
    pinned = {name: (s.source, s.config, s.split, s.size) for name, s in evaluation.mcq_sets.items()
              if name in evaluation.mcq}
    assert pinned == {"medqa": ("hf:GBaker/MedQA-USMLE-4-options", None, "test", 1273),
                      "medmcqa": ("hf:openlifescienceai/medmcqa", None, "validation", 4183),
                      "pubmedqa": ("hf:qiaojin/PubMedQA", "pqa_labeled", "train", 1000)}
    protocol = evaluation.mcq_protocol
    assert (protocol.max_new_tokens, protocol.decoding, protocol.samples, protocol.max_questions) == (
        2048, "greedy", 1, None)
    assert (protocol.temperature, protocol.top_p) == (0.6, 0.95)  # for `-S eval.mcq_protocol.decoding=sampled`


def test_the_grpo_recipe_continues_the_reference_one_on_medqa_train(tmp_path):
    """r1_medical_grpo is r1_medical_en's SFT, then GRPO on MedQA's train split (its test split is what evaluate
    scores); every SFT-only recipe hands the SFT adapter on unchanged."""
    grpo = config.load(compose(tmp_path, "recipe=r1_medical_grpo"))
    sft = config.load(compose(tmp_path, "recipe=r1_medical_en"))
    assert (grpo.model, grpo.data, grpo.lora, grpo.eval) == (sft.model, sft.data, sft.lora, sft.eval)
    rl = grpo.rl
    assert (rl.source, rl.split, rl.reward, rl.engine) == ("hf:GBaker/MedQA-USMLE-4-options", "train", "answer",
                                                           "static")
    assert grpo.eval.mcq_sets["medqa"].source == rl.source and grpo.eval.mcq_sets["medqa"].split == "test"
    assert (rl.max_steps, rl.num_generations, rl.max_new_tokens) == (100, 8, 2048)
    assert rl.max_new_tokens < grpo.train.max_seq_length
    for recipe in ("r1_medical_en", "r1_medical_zh", "fast_gpu", "cmeee_ner", "embedded_ner", "embedded_zh",
                   "speed_8b"):
        assert config.load(compose(tmp_path, f"recipe={recipe}")).rl.max_steps == 0, recipe


def test_sampled_pass_at_1_is_one_override_away(tmp_path):
    sampled = config.load(compose(tmp_path, "recipe=r1_medical_en", "eval.mcq_protocol.decoding=sampled",
                                  "eval.mcq_protocol.samples=4")).eval.mcq_protocol
    assert (sampled.decoding, sampled.samples, sampled.temperature, sampled.top_p) == ("sampled", 4, 0.6, 0.95)


def test_every_field_has_a_docstring():
    from scripts.params_reference import docstrings

    documented = docstrings()
    undocumented = [f"{cls.__name__}.{f.name}" for cls in config_classes() for f in dataclasses.fields(cls)
                    if not documented.get((cls.__name__, f.name))]
    assert undocumented == []


@pytest.mark.parametrize("overrides, message", [
    ({"train.max_stepz": 5}, "train.max_stepz: unknown key; did you mean train.max_steps?"),
    ({"lora.rank": 8}, "lora.rank: unknown key"),
    ({"sead": 1}, "sead: unknown key; did you mean seed?"),
    ({"train.lr_scheduler_kwargs": {"min_lr_rate": "low"}}, "train.lr_scheduler_kwargs.min_lr_rate: expected float"),
    ({"train.max_steps": "ten"}, "train.max_steps: expected int, got str 'ten'"),
    ({"train.max_steps": -1}, "train.max_steps: must be > 0, got -1"),
    ({"lora.r": 0}, "lora.r: must be > 0, got 0"),
    ({"train.per_device_train_batch_size": 0}, "train.per_device_train_batch_size: must be > 0"),
    ({"train.backend": "torchtune"}, "train.backend: must be one of unsloth, hf; got 'torchtune'"),
    ({"train.load_in_4bit": "yes"}, "train.load_in_4bit: expected bool"),
    ({"lora.target_modules": "q_proj"}, "lora.target_modules: expected a list"),
    ({"data.on_bad_row": "ignore"}, "data.on_bad_row: must be one of error, skip"),
    ({"lora.dropout": 1.5}, "lora.dropout: must be in [0, 1)"),
    ({"rl.num_generations": 1}, "rl.num_generations: must be >= 2"),
    ({"rl.backend": "unsloth"}, "rl.backend: must be hf with rl.engine static (Unsloth replaces"),
    ({"rl.reward": "length"}, "rl.reward: must be one of answer; got 'length'"),
    ({"rl.loss_type": "ppo"}, "rl.loss_type: must be one of grpo, dr_grpo, dapo, bnpo, cispo, sapo"),
    ({"rl.top_p": 0}, "rl.top_p: must be in (0, 1]"),
    ({"rl.max_steps": -1}, "rl.max_steps: must be >= 0"),
    ({"data": []}, "data: expected a mapping"),
    ({"eval.mcq": ["medqa", "usmle"]}, "eval.mcq: must be a list of distinct names from eval.mcq_sets ("),
    ({"eval.mcq_protocol.samples": 4}, "eval.mcq_protocol.samples: must be 1 with greedy decoding"),
    ({"eval.mcq_protocol.decoding": "sampled", "eval.mcq_protocol.top_p": 0}, "eval.mcq_protocol.top_p: must be in"),
    ({"eval.mcq_protocol.decoding": "sampled", "eval.engine": "generate"},
     "eval.mcq_protocol.decoding: must be greedy with eval.engine generate"),
    ({"eval.mcq_sets.medqa.size": 0}, "eval.mcq_sets.medqa.size: must be null (not checked) or >= 1"),
    ({"eval.mcq_sets.medqa.splt": "test"}, "eval.mcq_sets.medqa.splt: unknown key; did you mean eval.mcq_sets.medqa.split?"),
    ({"eval.mcq_sets": {"med-qa": {}}}, "eval.mcq_sets: 'med-qa' is not a name"),
])
def test_bad_params_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, overrides))
    assert message in str(err.value)


def test_yaml_scientific_notation_reads_as_float(tmp_path):
    path = write(tmp_path, {})
    path.write_text(path.read_text().replace("learning_rate: 0.005", "learning_rate: 2e-4"))
    assert config.load(path).train.learning_rate == 2e-4


def test_overrides_apply_dotted_keys():
    params = config.load(REPO / "params.yaml", {"lora.r": 8, "train.backend": "hf"})
    assert (params.lora.r, params.train.backend) == (8, "hf")


def test_the_policy_may_load_with_unsloth_when_rollouts_go_through_generate():
    params = config.load(REPO / "params.yaml", {"rl.backend": "unsloth", "rl.engine": "generate"})
    assert (params.rl.backend, params.rl.engine, params.train.backend) == ("unsloth", "generate", "unsloth")


def test_optimizer_and_schedule_names_are_those_transformers_knows():
    """config reads them from transformers' source to spare every stage the import; they must be the enums."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert config.transformers_names("OptimizerNames") == {name.value for name in OptimizerNames}
    assert config.transformers_names("SchedulerType") == {name.value for name in SchedulerType}

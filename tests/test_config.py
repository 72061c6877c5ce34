"""Experiment configs: every shipped YAML validates; bad values name their key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ctxseg.engine.config import (
    AdversarialConfig,
    Config,
    OptimConfig,
    config_from_dict,
    load_config,
)
from ctxseg.losses import build_loss

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*/*.yaml"))
CLASSES = {"promise12": 2, "phantom-prostate": 2, "acdc": 4, "phantom-cardiac": 4}
EXPERIMENTS = [
    "unet_ce",
    "unet_wce",
    "unet_dice",
    "unet_focal",
    "unet_context_static",
    "unet_context_dynamic",
]


def test_every_dataset_has_the_six_unet_experiments() -> None:
    for dataset in CLASSES:
        for name in EXPERIMENTS:
            assert (REPO / "configs" / dataset / f"{name}.yaml").is_file(), (dataset, name)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_config_validates_and_builds_its_loss(path: Path) -> None:
    config = load_config(path)
    assert config.experiment == path.stem
    assert Path(config.data.root).name == path.parent.name
    if path.stem in EXPERIMENTS:  # the U-Net runs: the paper's settings (SPEC §7)
        assert (config.optim.name, config.optim.lr, config.optim.step_every) == ("adam", 1e-4, None)
        assert (config.train.epochs, config.train.batch_size) == (150, 16)
        assert (config.data.augment, config.model.name, config.adversarial) == (
            False,
            "unet32",
            None,
        )
        if config.loss.name == "context":
            assert config.loss.lambda_roi == 1.0
        if config.loss.roi == "static":
            prostate = path.parent.name in ("promise12", "phantom-prostate")
            assert config.loss.roi_size == (50 if prostate else 60)
    num_classes = CLASSES.get(path.parent.name, 2)
    kwargs = config.loss.kwargs()
    if config.loss.weights == "auto":
        kwargs["class_frequencies"] = [1.0] * num_classes
    build_loss(config.loss.name, num_classes, **kwargs)  # the loss accepts every key
    # to_dict round-trips through YAML into an equal config.
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


def test_paper_weights_and_focal_factors() -> None:
    wce = load_config(REPO / "configs/promise12/unet_wce.yaml").loss
    assert wce.weights == [0.25, 0.75]
    assert load_config(REPO / "configs/acdc/unet_wce.yaml").loss.weights == [0.1, 0.5, 0.2, 0.2]
    assert load_config(REPO / "configs/promise12/unet_focal.yaml").loss.alpha == 4.0
    assert load_config(REPO / "configs/acdc/unet_focal.yaml").loss.alpha == 1.0
    assert load_config(REPO / "configs/promise12/unet_dice.yaml").loss.variant == "log_jaccard"


def _base() -> dict:
    return {"experiment": "x", "data": {"root": "d/p"}, "loss": {"name": "ce"}}


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_base()))
    config = load_config(
        path,
        [
            "loss.lambda_roi=0.5",
            "optim.lr=1e-3",  # PyYAML reads 1e-3 (no dot) as a string: accepted as a number
            "train.epochs=3",
            "loss.weights=[1, 3]",
            "adversarial.lambda_adv=2",  # adversarial was absent: created with defaults
            "experiment=x_gan",  # a discriminator makes another kind of experiment: new name
        ],
    )
    assert config.loss.lambda_roi == 0.5
    assert config.optim.lr == 1e-3
    assert config.optim.betas == (0.9, 0.999)
    assert config.train.epochs == 3
    assert config.loss.weights == [1.0, 3.0]
    assert config.adversarial == AdversarialConfig(lambda_adv=2.0)
    assert config.adversarial.optim == OptimConfig()
    assert config.loss.kwargs() == {"lambda_roi": 0.5, "weights": [1.0, 3.0]}
    assert config.dataset_name() == "p"
    assert config.experiment == "x_gan"
    assert config.derived_from == (
        f"x ({path}) with --set loss.lambda_roi=0.5 --set loss.weights=[1, 3] --set "
        "adversarial.lambda_adv=2: loss ce, no discriminator -> loss ce, context discriminator "
        "(static ROI)"
    )
    assert isinstance(config, Config)


def test_lr_schedule_is_a_function_of_the_epoch() -> None:
    optim = OptimConfig(lr=1.0, step_every=2, step_gamma=0.5)
    assert [optim.lr_at(e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert OptimConfig(lr=0.1).lr_at(100) == 0.1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.lamda_roi=1", "loss.lamda_roi: unknown key"),
        ("optim.lr=-1", "optim.lr: must be > 0, got -1.0"),
        ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
        ("train.epochs=1.5", "train.epochs: expected int, got 1.5"),
        ("train.epochs=true", "train.epochs: expected int, got True"),
        ("train.epochs=0", "train.epochs: must be >= 1, got 0"),
        ("train.device=tpu", "train.device: expected one of 'auto' | 'cpu' | 'cuda', got 'tpu'"),
        ("loss.name=l2", "loss.name: expected one of"),
        ("loss.weights=[0.5, x]", "loss.weights[1]: expected float, got 'x'"),
        ("loss.weights=some", "loss.weights: expected 'auto' | list of float | null, got 'some'"),
        ("optim.betas=[0.9]", "optim.betas: expected a list of 2 numbers, got [0.9]"),
        ("adversarial.min_roi=8", "adversarial.min_roi: must be >= 17, got 8"),
        ("adversarial.optim.name=rmsprop", "adversarial.optim.name: expected one of"),
        ("data=3", "data: expected a mapping, got 3"),
        ("experiment=a/b", "experiment: must be a non-empty name without slashes"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, override: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_base()))
    with pytest.raises(ValueError) as info:
        load_config(path, [override])
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    with pytest.raises(FileNotFoundError, match="none.yaml"):
        load_config(missing)
    path = tmp_path / "c.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="c.yaml: expected a mapping at the top level"):
        load_config(path)
    path.write_text("experiment: [unclosed\n")
    with pytest.raises(ValueError, match="c.yaml: not valid YAML"):
        load_config(path)
    raw = _base()
    del raw["loss"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="c.yaml: loss: missing required key"):
        load_config(path)
    path.write_text(yaml.safe_dump(_base()))
    with pytest.raises(ValueError, match="expected key=value"):
        load_config(path, ["loss.name"])
    with pytest.raises(ValueError, match="train.epochs is not a mapping"):
        load_config(path, ["train.epochs=3", "train.epochs.x=1"])


def test_shipped_experiment_by_name_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    by_name = load_config("promise12/unet_context_static")
    by_file = load_config(REPO / "configs/promise12/unet_context_static.yaml")
    assert by_name.to_dict() == by_file.to_dict()
    assert load_config("acdc/unet_ce.yaml").loss.name == "ce"
    with pytest.raises(FileNotFoundError, match=r"promise12/unet_cee.*datasets \['acdc'"):
        load_config("promise12/unet_cee")


def test_repository_configs_folder_is_the_shipped_one() -> None:
    from ctxseg.engine.config import BUILTIN_CONFIGS

    assert (REPO / "configs").resolve() == BUILTIN_CONFIGS.resolve()
    assert len(CONFIGS) == len(list(BUILTIN_CONFIGS.glob("*/*.yaml"))) >= 40

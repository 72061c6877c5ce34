"""Typed, validated experiment configuration (one YAML file per experiment).

A config is a tree of dataclasses. :func:`load_config` reads a YAML file, applies
``--set key=value`` overrides and converts the result field by field: an unknown key, a value
of the wrong type or an out-of-range value raises :class:`ValueError` naming the key path and
the file (``"configs/x.yaml: loss.lamda_roi: unknown key"``). :meth:`Config.to_dict` gives the
resolved config back as plain YAML-safe types; it is saved in every run folder and checkpoint.
Numbers must be finite (``.inf``, ``.nan``, ``1e999`` are refused in every float field and list).

Runs are filed and tabled by experiment name, so an override that changes the kind of experiment
(:func:`experiment_kind`: the loss, the ROI, the discriminator) is refused unless it also gives
the experiment a new name (``--set experiment=<name>``); the change is then recorded in the
config's ``derived_from``.

The defaults are the paper's training settings (SPEC §7): Adam 1e-4, 150 epochs, batch 16.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

__all__ = [
    "AdversarialConfig",
    "Config",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "config_differences",
    "config_from_dict",
    "experiment_kind",
    "load_config",
    "resolve_config_path",
]

# The experiment configs shipped with the package (configs/<dataset>/<experiment>.yaml).
BUILTIN_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class _Invalid(ValueError):
    """A bad value at a key path; re-raised by the loader with the path and source prefixed."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class _NonFinite(_Invalid):
    """A NaN or infinite number: reported as such even where a union allows other types."""


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise _Invalid(key, message)


@dataclass
class DataConfig:
    """Which prepared store to train on and which of its slices (SPEC §3)."""

    root: str
    train_slices: Literal["foreground", "all"] = "foreground"
    val_slices: Literal["foreground", "all"] = "foreground"
    augment: bool = False

    def check(self) -> None:
        _check(bool(self.root), "root", "must be a non-empty path")


@dataclass
class ModelConfig:
    """The segmentation network (SPEC §4)."""

    name: Literal["unet32", "unet64bn"] = "unet32"

    def check(self) -> None:
        pass


@dataclass
class LossConfig:
    """Arguments of :func:`ctxseg.losses.build_loss`; a ``None`` field is not passed (SPEC §6)."""

    name: Literal["ce", "wce", "dice", "focal", "context"]
    base: str | None = None
    roi: Literal["static", "dynamic"] | None = None
    roi_size: int | None = None
    margin: int | None = None
    min_size: int | None = None
    lambda_roi: float | None = None
    weights: Literal["auto"] | list[float] | None = None
    variant: Literal["soft", "log_jaccard"] | None = None
    gamma: float | None = None
    alpha: float | list[float] | None = None

    def check(self) -> None:
        for key in ("roi_size", "min_size"):
            value = getattr(self, key)
            _check(value is None or value >= 1, key, f"must be >= 1, got {value}")
        _check(
            self.margin is None or self.margin >= 0, "margin", f"must be >= 0, got {self.margin}"
        )
        _check(
            self.lambda_roi is None or self.lambda_roi >= 0,
            "lambda_roi",
            f"must be >= 0, got {self.lambda_roi}",
        )
        _check(self.gamma is None or self.gamma >= 0, "gamma", f"must be >= 0, got {self.gamma}")
        if isinstance(self.weights, list):
            _check(
                all(w >= 0 for w in self.weights) and sum(self.weights) > 0,
                "weights",
                f"must be non-negative with a positive sum, got {self.weights}",
            )

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``build_loss`` besides the name: the fields that are set."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "name" and getattr(self, f.name) is not None
        }


@dataclass
class OptimConfig:
    """An optimiser and its optional step schedule (``lr *= step_gamma`` every ``step_every``)."""

    name: Literal["adam", "sgd"] = "adam"
    lr: float = 1.0e-4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    weight_decay: float = 0.0
    step_every: int | None = None
    step_gamma: float = 0.1

    def check(self) -> None:
        _check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _check(all(0 <= b < 1 for b in self.betas), "betas", f"must be in [0, 1), got {self.betas}")
        _check(self.momentum >= 0, "momentum", f"must be >= 0, got {self.momentum}")
        _check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(
            self.step_every is None or self.step_every >= 1,
            "step_every",
            f"must be >= 1 or null, got {self.step_every}",
        )
        _check(self.step_gamma > 0, "step_gamma", f"must be > 0, got {self.step_gamma}")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of 0-based ``epoch`` (a pure function of it, so resume is exact)."""
        if self.step_every is None:
            return self.lr
        return self.lr * self.step_gamma ** (epoch // self.step_every)


@dataclass
class TrainConfig:
    """The loop: epochs, batch size (global, over all processes), validation and device."""

    epochs: int = 150
    batch_size: int = 16
    val_every: int = 1
    val_hd: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: bf16 autocast: auto (CUDA, and CPUs with native bf16), bf16 (forced), off (fp32).
    amp: Literal["auto", "bf16", "off"] = "auto"
    #: channels-last memory format: auto (CUDA, AVX-512 CPUs), on, off.
    channels_last: Literal["auto", "on", "off"] = "auto"
    tensorboard: bool = False

    def check(self) -> None:
        _check(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.val_every >= 1, "val_every", f"must be >= 1, got {self.val_every}")


@dataclass
class AdversarialConfig:
    """The discriminator of the GAN / Seg-GLGAN runs (SPEC §4, §6); read by the GAN trainer.

    The defaults are the paper's discriminator inputs: softmax maps ("fake") against one-hot
    targets ("real"), no image, no noise, real label 1. Those can be told apart by softness
    alone (issue 9, ``docs/seg-glgan.md``); the other values are the remedies:
    ``real_maps: scaled`` (Luc et al. 2016, with ``scale_tau``), ``fake_maps: straight_through``
    or ``gumbel`` (with ``gumbel_tau``), ``with_image`` (a conditional discriminator),
    ``noise_sigma`` / ``noise_decay_epochs`` (instance noise on the class maps, linearly
    decaying to 0) and ``real_label`` (one-sided label smoothing).
    """

    discriminator: Literal["plain", "context"] = "context"
    roi: Literal["static", "dynamic"] = "static"
    roi_size: int = 50
    margin: int = 0
    min_roi: int = 20
    lambda_adv: float = 1.0
    with_image: bool = False
    real_maps: Literal["onehot", "scaled"] = "onehot"
    scale_tau: float = 0.9
    fake_maps: Literal["soft", "straight_through", "gumbel"] = "soft"
    gumbel_tau: float = 1.0
    real_label: float = 1.0
    noise_sigma: float = 0.0
    noise_decay_epochs: int | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)

    def check(self) -> None:
        _check(self.roi_size >= 1, "roi_size", f"must be >= 1, got {self.roi_size}")
        _check(self.margin >= 0, "margin", f"must be >= 0, got {self.margin}")
        # The dynamic local branch's unpadded 9-5-5 convolutions need at least 17 px (SPEC §4).
        _check(self.min_roi >= 17, "min_roi", f"must be >= 17, got {self.min_roi}")
        # Comparisons with NaN are false, so each range check below also rejects NaN.
        inf = float("inf")
        _check(
            0 <= self.lambda_adv < inf,
            "lambda_adv",
            f"must be finite and >= 0, got {self.lambda_adv}",
        )
        _check(0 < self.scale_tau <= 1, "scale_tau", f"must be in (0, 1], got {self.scale_tau}")
        _check(
            0 < self.gumbel_tau < inf,
            "gumbel_tau",
            f"must be finite and > 0, got {self.gumbel_tau}",
        )
        # One-sided label smoothing: the real label stays above the fake one's 0 and 1/2.
        _check(
            0.5 < self.real_label <= 1, "real_label", f"must be in (0.5, 1], got {self.real_label}"
        )
        _check(
            0 <= self.noise_sigma < inf,
            "noise_sigma",
            f"must be finite and >= 0, got {self.noise_sigma}",
        )
        _check(
            self.noise_decay_epochs is None or self.noise_decay_epochs >= 1,
            "noise_decay_epochs",
            f"must be >= 1 or null, got {self.noise_decay_epochs}",
        )
        # Scaled real maps are as soft as the prediction: against one-hot fakes, the softness
        # cue would come back the other way round.
        _check(
            self.real_maps == "onehot" or self.fake_maps == "soft",
            "real_maps",
            f"'scaled' needs fake_maps 'soft', got fake_maps {self.fake_maps!r}",
        )

    def noise_at(self, epoch: int) -> float:
        """The instance-noise sigma of 0-based ``epoch``: ``noise_sigma``, decaying linearly to
        0 at ``noise_decay_epochs`` (constant when that is null); a pure function of the epoch,
        so resume is exact."""
        if self.noise_decay_epochs is None:
            return self.noise_sigma
        return self.noise_sigma * max(0.0, 1.0 - epoch / self.noise_decay_epochs)


@dataclass
class Config:
    """One experiment: everything a run needs besides the run folder and the device."""

    experiment: str
    data: DataConfig
    loss: LossConfig
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adversarial: AdversarialConfig | None = None
    # Set by load_config when an override changed the kind of experiment (see experiment_kind).
    derived_from: str | None = None

    def check(self) -> None:
        _check(
            bool(self.experiment) and "/" not in self.experiment and "\\" not in self.experiment,
            "experiment",
            f"must be a non-empty name without slashes, got {self.experiment!r}",
        )
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-safe types (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def dataset_name(self) -> str:
        """The name runs are filed under: the store folder's name (``runs/<name>/<experiment>``)."""
        return Path(self.data.root).name


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Conversion of raw YAML values into the dataclasses


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"{origin.__name__} of {_type_name(args[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise :class:`_Invalid` at ``path``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, path)
            except _Invalid as err:
                errors.append(err)
        nonfinite = [e for e in errors if isinstance(e, _NonFinite)]
        if nonfinite:  # a number, just not a finite one: say so rather than list the types
            raise nonfinite[0]
        nested = [e for e in errors if e.path != path]
        if len(nested) == 1:  # e.g. a bad item inside the one list option: report that
            raise nested[0]
        raise _Invalid(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp) and isinstance(value, str | type(None)):
            return value
        if isinstance(value, bool):
            # YAML 1.1 reads a bare off / on / no / yes as a boolean: `--set train.amp=off`
            # must work as typed.
            alias = "on" if value else "off"
            if alias in typing.get_args(tp):
                return alias
        raise _Invalid(path, f"expected one of {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise _Invalid(path, f"expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise _Invalid(path, f"expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise _Invalid(path, f"expected a list of {len(items)} numbers, got {value!r}")
        pairs = enumerate(zip(value, items, strict=True))
        return tuple(_convert(v, t, f"{path}[{i}]") for i, (v, t) in pairs)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            # YAML 1.1 (PyYAML) reads "1e-4" without a dot as a string; accept it as a number.
            number = float(value)
        if number is not None:
            if not math.isfinite(number):  # .inf, .nan, 1e999: every float field, every item
                raise _NonFinite(path, f"must be a finite number, got {value!r}")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this loader does not know is a programming error
        raise TypeError(f"unsupported config field type {tp!r} at {path}")
    raise _Invalid(path, f"expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, raw: Any, path: str) -> Any:
    if not isinstance(raw, dict):
        raise _Invalid(path, f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{path}." if path else ""
    for key in raw:
        if key not in fields:
            raise _Invalid(f"{prefix}{key}", f"unknown key (known: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _convert(raw[name], hints[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Invalid(f"{prefix}{name}", "missing required key")
    obj = cls(**values)
    try:
        obj.check()
    except _Invalid as err:
        raise _Invalid(f"{prefix}{err.path}", err.message) from None
    return obj


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a raw config mapping (as read from YAML or a checkpoint) into a :class:`Config`.

    Raises:
        ValueError: ``"<source>: <key path>: <problem>"`` for an unknown key, a missing required
            key, a wrong type or an out-of-range value.
    """
    try:
        return _build(Config, raw, "")
    except _Invalid as err:
        raise ValueError(f"{source}: {err}") from None


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths (``"optim.lr"``) whose values differ between two config dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [d for k in keys for d in config_differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set {override!r}: expected key=value, e.g. loss.lambda_roi=0.5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"--set {override!r}: value is not valid YAML ({err})") from None
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:  # e.g. adversarial: null, then --set adversarial.lambda_adv=2
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"--set {override!r}: {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
    node[parts[-1]] = value


_KIND_ROOTS = ("loss", "adversarial")  # the sections experiment_kind reads


def experiment_kind(raw: Any) -> tuple:
    """What kind of experiment a raw config mapping is: the settings that name a method.

    The loss (and for the context loss its base loss and ROI), and whether there is a
    discriminator (and which, and for the context one its ROI). Runs are filed and tabled by
    experiment name, so two configs of one name must be of one kind.
    """

    def part(node: Any, key: str) -> Any:
        return node.get(key) if isinstance(node, dict) else None

    loss = part(raw, "loss")
    kind: tuple = (part(loss, "name"),)
    if kind[0] == "context":
        kind += (part(loss, "base") or "ce", part(loss, "roi"))
    adversarial = part(raw, "adversarial")
    if adversarial is None:
        return (*kind, None, None)
    discriminator = part(adversarial, "discriminator") or AdversarialConfig.discriminator
    roi = part(adversarial, "roi") or AdversarialConfig.roi
    return (*kind, discriminator, roi if discriminator == "context" else None)


def _describe_kind(kind: tuple) -> str:
    """``experiment_kind`` in words: ``"loss ce, context discriminator (static ROI)"``."""
    if kind[0] == "context":
        loss, (discriminator, roi) = f"loss context (base {kind[1]}, {kind[2]} ROI)", kind[3:]
    else:
        loss, (discriminator, roi) = f"loss {kind[0]}", kind[1:]
    if discriminator is None:
        return f"{loss}, no discriminator"
    return f"{loss}, {discriminator} discriminator" + (f" ({roi} ROI)" if roi else "")


def _check_kind(
    before: dict[str, Any], after: dict[str, Any], overrides: list[str], source: str, given: str
) -> str | None:
    """Refuse overrides that change the kind of experiment under the same name.

    Returns:
        None if the kind is unchanged; else the ``derived_from`` record of the renamed run.

    Raises:
        ValueError: the kind changed and ``experiment`` was not given a new name.
    """
    old, new = experiment_kind(before), experiment_kind(after)
    if old == new:
        return None
    name = before.get("experiment")
    change = f"{_describe_kind(old)} -> {_describe_kind(new)}"
    relevant = [o for o in overrides if o.partition("=")[0].strip().split(".")[0] in _KIND_ROOTS]
    sets = " ".join(f"--set {o}" for o in relevant or overrides)
    if after.get("experiment") == name:
        raise ValueError(
            f"{source}: {sets} changes the kind of experiment {name!r} ({change}); a run still "
            f"named {name!r} would be filed and tabled as that experiment. Give it a new name: "
            "add --set experiment=<new name>, or copy the config under a new experiment name"
        )
    return f"{name} ({given}) with {sets}: {change}"


def resolve_config_path(path: str | Path) -> Path:
    """A YAML file, or a shipped experiment named ``<dataset>/<experiment>``.

    The shipped configs live in the package (``ctxseg/configs``, linked from the repository's
    ``configs/``), so ``ctxseg train promise12/unet_ce`` works from any directory.

    Raises:
        FileNotFoundError: neither a file nor a shipped experiment; the message lists the
            shipped data sets.
    """
    path = Path(path)
    if path.is_file():
        return path
    shipped = BUILTIN_CONFIGS / (path if path.suffix == ".yaml" else path.with_suffix(".yaml"))
    if not path.is_absolute() and shipped.is_file():
        return shipped
    datasets = sorted(p.name for p in BUILTIN_CONFIGS.iterdir() if p.is_dir())
    raise FileNotFoundError(
        f"config file not found: {path} (nor a shipped experiment <dataset>/<experiment>, "
        f"datasets {datasets})"
    )


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read an experiment YAML file, apply ``key=value`` overrides and validate it.

    Args:
        path: the YAML file, or a shipped experiment ``<dataset>/<experiment>``.
        overrides: ``"loss.lambda_roi=0.5"`` style strings; values parsed with ``yaml.safe_load``.

    Returns:
        The validated :class:`Config`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable YAML, a bad override, or an invalid value; the message names the
            file and the key path. Also an override that changes the kind of experiment
            (:func:`experiment_kind`) unless it gives ``experiment`` a new name; with one, the
            change is recorded in ``Config.derived_from``.
    """
    given, path = str(path), resolve_config_path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {raw!r}")
    source = str(path)
    before = copy.deepcopy(raw)
    for override in overrides or []:
        _apply_override(raw, override)
    if overrides:
        source += f" (with --set {' '.join(overrides)})"
    config = config_from_dict(raw, source)
    derived = _check_kind(before, raw, list(overrides or []), str(path), given)
    if derived is not None:
        config = dataclasses.replace(config, derived_from=derived)
    return config

"""Structured configuration: one dataclass checked in one place, composed by Hydra from `conf/`.

`python -m bench run` composes one point; `python -m bench sweep` expands Hydra's sweep grammar
(`x=a,b`, `range(a,b,step)`, the preset's `hydra.sweeper.params`) into points with Hydra's own parser and
basic sweeper (the compose API refuses sweep overrides; FACTS.md, "Hydra"). Every point is validated before
anything runs, so bad input exits 2 with nothing written.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "size", "device", "sweep")
DEVICES = ("cpu", "cuda", "auto")
DTYPES = ("float32", "float16", "bfloat16")
MODES = ("inference", "train")
FORMATS = ("text", "json")


class ConfigError(ValueError):
    """Bad user input; the message is one line naming the key and the value."""


@dataclass
class BenchConfig:
    """Every knob of one grid point, plus the sweep's own settings (which are not part of a point's identity)."""

    # --- identity of a point: what is measured
    model: str = "vanilla"
    size: str = "small"
    device: str = "cpu"
    dtype: str = "float32"
    seq_len: int = 512
    batch_size: int = 1
    mode: str = "inference"
    attention_impl: str = "sdpa"
    d_model: int | None = None  # None: from the size preset (bench.models.PRESETS)
    n_heads: int | None = None
    d_ff: int | None = None
    n_layers: int | None = None
    max_seq_len: int | None = None
    rank: Any = None  # int (absolute) or float in (0, 1) (fraction of break-even); None: preset's
    linformer_k: int | None = None
    linformer_sharing: str = "layerwise"
    norm: str = "post"
    # --- how it is measured
    min_run_time_s: float = 1.0  # torch.utils.benchmark adaptive repeats run at least this long
    min_runs: int = 5
    memory: bool = True
    energy: bool = True
    energy_min_duration_s: float = 2.0  # one codecarbon tracker wraps a loop at least this long
    country_iso_code: str = "USA"
    pue: float = 1.0  # codecarbon's default; Strubell used 1.58 (FACTS.md)
    timeout_s: float = 300.0
    # --- the sweep and output
    name: str = "cpu"
    results_dir: str = "results"
    overwrite: bool = False
    shuffle: bool = False
    seed: int = 0
    format: str = "text"
    fail_at: Any = None  # testing hook: a seq_len (or "all") at which the worker raises, to prove recovery

    def model_overrides(self) -> dict[str, Any]:
        """The bench.models.build_model() keywords of this point."""
        keys = ("d_model", "n_heads", "d_ff", "n_layers", "max_seq_len", "rank", "linformer_k",
                "linformer_sharing", "attention_impl", "norm")
        return {"preset": self.size, **{k: getattr(self, k) for k in keys}}


POINT_FIELDS = ("model", "size", "device", "dtype", "seq_len", "batch_size", "mode", "attention_impl", "d_model",
                "n_heads", "d_ff", "n_layers", "max_seq_len", "rank", "linformer_k", "linformer_sharing", "norm",
                "min_run_time_s", "min_runs", "memory", "energy", "energy_min_duration_s", "country_iso_code", "pue")
KNOWN_KEYS = {f.name for f in fields(BenchConfig)}

ConfigStore.instance().store(name="BenchConfig", node=BenchConfig)


def point_key(cfg: BenchConfig, machine: str) -> str:
    """Resume key: sha1 of the point's resolved identity and measurement settings plus the machine's
    identity (device name, CPU model, torch version), so rows from another machine are never reused."""
    payload = json.dumps({"point": {k: getattr(cfg, k) for k in POINT_FIELDS}, "machine": machine}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _parse(overrides: list[str]) -> list:
    """Hydra's override parser, one override at a time so a malformed one is named."""
    parser, parsed = OverridesParser.create(), []
    for line in overrides:
        try:
            override = parser.parse_overrides([line])[0]
            if override.is_discrete_sweep():
                list(override.sweep_string_iterator())  # range(a,b,0) fails only when expanded
        except (HydraException, ValueError) as error:
            raise ConfigError(f"{line}: malformed override ({_one_line(error)})") from None
        parsed.append(override)
    return parsed


def _check_override_keys(overrides: list[str], known: set[str] = KNOWN_KEYS, groups: tuple[str, ...] = GROUPS,
                         what: str = "key") -> None:
    """Name an unknown key or group option ourselves: Hydra's messages are multi-line."""
    for override in _parse(overrides):
        key = override.key_or_group
        if key.startswith("hydra") or key.startswith("+") or override.package:
            continue
        if key in groups:
            options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
            values = override.sweep_string_iterator() if override.is_sweep_override() else [override.value()]
            for value in values:
                if str(value) not in options:
                    raise ConfigError(f"{key}={value}: unknown {key}; choose from {', '.join(options)}")
        elif key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError(f"{override.input_line}: unknown {what} {key!r}"
                              + (f" (did you mean {hint[0]}?)" if hint else ""))


def _one_line(error: BaseException) -> str:
    if not isinstance(error, OmegaConfBaseException) and isinstance(error.__cause__, OmegaConfBaseException):
        error = error.__cause__  # Hydra wraps the OmegaConf error that names the key and value
    if isinstance(error, OmegaConfBaseException) and getattr(error, "full_key", None):
        return f"{error.full_key}: {str(error).splitlines()[0]}"
    return str(error).strip().splitlines()[0]


def _compose(overrides: list[str], with_hydra: bool = False, config_name: str = "config") -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise ConfigError(_one_line(error)) from None
    finally:
        GlobalHydra.instance().clear()


def to_config(node: DictConfig) -> BenchConfig:
    """A typed BenchConfig from a composed node (hydra's own section dropped), validated."""
    data = OmegaConf.to_container(node, resolve=False)
    data.pop("hydra", None)  # unresolvable outside a Hydra run (hydra.job.num is set per job)
    data = OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BenchConfig), data))
    except OmegaConfBaseException as error:
        raise ConfigError(_one_line(error)) from None
    return validate(cfg)


def validate(cfg: BenchConfig) -> BenchConfig:
    """Check every value; the model's own rules come from bench.models (raised with the key's name)."""
    for key, choices in (("device", DEVICES), ("dtype", DTYPES), ("mode", MODES), ("format", FORMATS)):
        if getattr(cfg, key) not in choices:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: expected one of {', '.join(choices)}")
    for key in ("seq_len", "batch_size", "min_runs"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}={getattr(cfg, key)}: must be ≥ 1")
    for key in ("min_run_time_s", "timeout_s"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"{key}={getattr(cfg, key)}: must be > 0")
    if cfg.energy_min_duration_s < 0:
        raise ConfigError(f"energy_min_duration_s={cfg.energy_min_duration_s}: must be ≥ 0")
    if cfg.pue < 1.0:
        raise ConfigError(f"pue={cfg.pue}: must be ≥ 1 (1.0 = no data-centre overhead)")
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device='cuda': no CUDA GPU is visible on this machine (use device=cpu or device=auto)")
    if cfg.energy:
        from bench.measure.energy import validate_country

        validate_country(cfg.country_iso_code)
    from bench.models import make_config

    try:
        model_cfg = make_config(cfg.model, **cfg.model_overrides())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.seq_len > model_cfg.max_seq_len:
        raise ConfigError(f"seq_len={cfg.seq_len}: exceeds max_seq_len={model_cfg.max_seq_len}")
    return cfg


def load_point(overrides: list[str]) -> BenchConfig:
    """One point from command-line overrides (sweep syntax refused: that is `sweep`'s job)."""
    _check_override_keys(overrides)
    for override in _parse(overrides):
        if override.is_sweep_override():
            raise ConfigError(f"{override.input_line}: sweep syntax needs `python -m bench sweep`")
    return to_config(_compose(overrides))


def expand_sweep(overrides: list[str]) -> tuple[BenchConfig, list[BenchConfig]]:
    """(the sweep's base config, every point) for command-line overrides over the chosen preset.

    The preset's `hydra.sweeper.params` supply axes; a command-line override of the same key replaces them.
    The product is Hydra's BasicSweeper.split_arguments, so the grammar is exactly Hydra's.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    _check_override_keys(overrides)
    parser = OverridesParser.create()
    parsed = _parse(overrides)
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    base_node = _compose(plain, with_hydra=True)
    given = {o.key_or_group for o in parsed}
    preset_axes = [f"{k}={v}" for k, v in (base_node.hydra.sweeper.params or {}).items() if k not in given]
    _check_override_keys(preset_axes)
    try:
        grid = BasicSweeper.split_arguments(parser.parse_overrides(preset_axes + overrides), None)[0]
    except HydraException as error:
        raise ConfigError(_one_line(error)) from None
    base = to_config(base_node)
    cache: dict[tuple[str, ...], DictConfig] = {}
    points = []
    for job in grid:
        # Group choices need a compose; plain values are applied on a cached compose (34 ms each otherwise).
        groups = tuple(o for o in job if o.split("=", 1)[0] in GROUPS or o.startswith("hydra"))
        if groups not in cache:
            cache[groups] = _compose([*groups, *plain])
        node = cache[groups].copy()
        for override in parser.parse_overrides([o for o in job if o not in groups]):
            try:
                OmegaConf.update(node, override.key_or_group, override.value(), merge=True)
            except OmegaConfBaseException as error:
                raise ConfigError(_one_line(error)) from None
        points.append(to_config(node))
    return base, points


def compose_checked(config_name: str, overrides: list[str], known: set[str], what: str) -> dict[str, Any]:
    """Another primary config of conf/ (e.g. `estimate/bert_base`) with checked plain overrides, as a dict."""
    _check_override_keys(overrides, known, groups=(), what=what)
    return OmegaConf.to_container(_compose(overrides, config_name=config_name), resolve=True)

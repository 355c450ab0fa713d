"""Where the app's Hydra configs live, and which extra provides each Hydra plugin.

``conf/`` is the repository's top-level config directory. A wheel or a regular ``pip install .``
carries it inside the package as ``sft_sweep/conf`` (mapped at build time, see setup.py); an
editable install or a source checkout reads the top-level directory itself.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

PACKAGE_DIR = Path(__file__).resolve().parent


def conf_dir() -> Path:
    """The directory holding ``config.yaml`` and the config groups, wherever the package is."""
    for cand in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (cand / "config.yaml").is_file():
            return cand
    raise FileNotFoundError(f"sft-sweep's configs are missing: neither {PACKAGE_DIR / 'conf'} nor "
                            f"{PACKAGE_DIR.parent / 'conf'} holds config.yaml (reinstall the package)")


# Hydra plugin config name -> (module the plugin installs, pip extra of this package that brings it).
PLUGINS: dict[str, tuple[str, str | None]] = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", None),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "launchers"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "launchers"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "ray_aws": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "optuna": ("hydra_plugins.hydra_optuna_sweeper", "search"),
    "sft_optuna": ("optuna", "search"),  # our sweeper ships with the package; optuna comes with [search]
}


def _defaults_of(path: Path) -> list:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    return list(doc.get("defaults") or []) if isinstance(doc, dict) else []


def _plugin_choices(group: str, option: str, conf: Path, seen: set) -> list[str]:
    """Plugin config names an option of ``group`` stands for: itself, or what our presets extend.

    ``hydra/launcher=slurm`` is our preset over ``submitit_slurm``; ``hparams_search=answer_acc``
    overrides ``/hydra/sweeper`` with ``optuna``; an ``experiment`` may pick a launcher.
    """
    if (group, option) in seen:
        return []
    seen.add((group, option))
    own = conf / group / f"{option}.yaml"
    if not own.is_file():
        return [option] if group.startswith("hydra/") else []
    found: list[str] = []
    for entry in _defaults_of(own):
        if isinstance(entry, str) and group.startswith("hydra/"):
            found += _plugin_choices(group, entry, conf, seen)
        elif isinstance(entry, dict):
            for key, value in entry.items():
                key = str(key).replace("override ", "").strip().lstrip("/")
                if key in ("hydra/launcher", "hydra/sweeper") and isinstance(value, str):
                    found += _plugin_choices(key, value, conf, seen)
    return found


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent namespace (hydra_plugins) is absent altogether
        return False


def missing_plugin(overrides: list[str]) -> str | None:
    """A one-line message when an override needs a Hydra plugin that is not installed, else None."""
    conf = conf_dir()
    for ov in overrides:
        key, sep, value = ov.partition("=")
        key = key.lstrip("+~").strip()
        if not sep or key not in ("hydra/launcher", "hydra/sweeper", "hparams_search", "experiment"):
            continue
        for option in (v.strip() for v in value.strip("[]").split(",")):
            for plugin in _plugin_choices(key, option, conf, set()):
                module, extra = PLUGINS.get(plugin, (None, None))
                if module is None or _importable(module):
                    continue
                hint = f"pip install 'sft-sweep[{extra}]'" if extra else "pip install hydra-joblib-launcher"
                return (f"sft-sweep: {ov} needs Hydra's {plugin} plugin ({module}), which is not installed: "
                        f"{hint}")
    return None

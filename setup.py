"""Build hook: ship the top-level ``conf/`` directory inside the package as ``sft_sweep.conf``.

``conf/`` stays where a researcher expects Hydra configs (the repository's top level); this
mapping copies it into wheels and regular installs, where ``sft_sweep.cli`` finds it beside
itself. Everything else about the package is declared in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

packages = find_namespace_packages(include=["sft_sweep*", "analysis*", "hydra_plugins*"],
                                   exclude=["*.__pycache__"])
setup(
    packages=packages + ["sft_sweep.conf"],
    package_dir={"sft_sweep.conf": "conf"},
    package_data={"sft_sweep.conf": ["*.yaml", "**/*.yaml"], "analysis": ["report.css"]},
)

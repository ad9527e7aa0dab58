"""Data files shipped inside a service's package (its `data/` folder): seeds, factors, policies.

They are parsed here and validated by the domain, so that changing a figure needs no code.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml


def load_packaged_yaml(package: str, name: str) -> Any:
    """The parsed content of `<package>/data/<name>`."""
    return yaml.safe_load((files(package) / "data" / name).read_text(encoding="utf-8"))

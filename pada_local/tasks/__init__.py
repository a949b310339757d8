"""Built-in tasks and verifiers. A verifier maps an input to its right answer, or None when it
cannot tell; quality control uses it to confirm a synthetic sample's answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

DATA_DIR = Path(__file__).parent / "data"
DEMO_CONFIG = Path(__file__).parent / "skills.yaml"


def get_verifier(name: str | None) -> Callable[[str], str | None] | None:
    if name is None:
        return None
    if name == "skills":
        from .skills import verify

        return verify
    raise ConfigError(f"task.verifier: unknown verifier '{name}'", hint="built-in verifiers: skills")

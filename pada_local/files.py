"""Small file helpers shared by the loop, the ledger and export: checksums, atomic writes,
time stamps and process liveness. Standard library only."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def now() -> str:
    """A UTC time stamp, to the second (what the run tables and artifacts record)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Written under a temporary name and renamed: never a half-written file under the final name."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    tmp.replace(path)
    return path


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (one we may not signal still counts)."""
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:
        return True
    return True

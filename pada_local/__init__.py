"""pada-local: PaDA-Agent (pattern-guided data augmentation) on one machine, offline."""

import os as _os

__version__ = "0.1.0"

# Never reach a model hub: every model comes from a local path. Set before any HF import.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

"""Sentence embeddings with sentence-transformers, from a local folder only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelError


class SentenceEmbedder:
    def __init__(self, model_dir: Path, device: str = "cpu", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        from .hf import quiet_libraries

        quiet_libraries()

        try:
            self.model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ModelError(f"{model_dir}: not a sentence-transformers model ({err})") from None
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype="float32")
        return self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            show_progress_bar=False, convert_to_numpy=True,
        )

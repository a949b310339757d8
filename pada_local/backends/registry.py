"""The backends by name: the module and class that implement each, and how to install it.

Data only, so the package, its child-process runner and `pada doctor` can read it without
importing one another.
"""

from __future__ import annotations

TRAINERS = {
    "peft": ("pada_local.backends.peft_trainer", "PeftTrainer", "transformers", "pip install 'pada-local'"),
    "unsloth": ("pada_local.backends.unsloth_trainer", "UnslothTrainer", "unsloth",
                "pip install 'pada-local[unsloth]'"),
    "mlx": ("pada_local.backends.mlx_trainer", "MLXTrainer", "mlx_lm", "pip install 'pada-local[mlx]'"),
}

# Generators (teacher, judge, student inference) by name: module, class. A new kind of
# generator (an HTTP endpoint) is one more backend file and one more line here.
GENERATORS = {
    "llama_cpp": ("pada_local.backends.llama_cpp", "LlamaCppGenerator"),
    "hf": ("pada_local.backends.hf", "HFGenerator"),
    "openai": ("pada_local.backends.openai_endpoint", "OpenAIGenerator"),  # any OpenAI-compatible server
}

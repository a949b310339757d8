"""What the student's chat template says, found by rendering it around placeholder words: the
text that ends an assistant turn, the tokens generation stops on, and the same prompt as an
Ollama template."""

from __future__ import annotations

from typing import Any

# Tokens chat models end a turn with (besides eos); <|endoftext|> too, for the Modelfile's stops.
TURN_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


def turn_suffix(tokenizer: Any) -> str:
    """What the template writes after an assistant reply (e.g. '<|im_end|>\\n')."""
    msgs = [{"role": "user", "content": "PADAUSER0"}, {"role": "assistant", "content": "PADAREPLY0"}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    return str(text).split("PADAREPLY0", 1)[-1] if "PADAREPLY0" in text else ""


def stop_tokens(tokenizer: Any) -> list[str]:
    """Token texts generation must stop on: eos and the end-of-turn tokens the vocabulary has."""
    vocab = tokenizer.get_vocab()
    suffix = turn_suffix(tokenizer)
    found = [t for t in (tokenizer.eos_token, *TURN_END_TOKENS) if t and t in vocab and t in suffix]
    return list(dict.fromkeys(found or [tokenizer.eos_token]))


def ollama_template(tokenizer: Any, system: str | None) -> str | None:
    """An Ollama (Go) template that renders exactly the prompt the student was trained on,
    derived by rendering the tokenizer's own template around placeholder words; None when the
    template hides them (then Ollama falls back to the GGUF's template)."""
    msgs = [{"role": "system", "content": "PADASYSTEM0"}] if system is not None else []
    msgs.append({"role": "user", "content": "PADAUSER0"})
    prompt = str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    suffix = turn_suffix(tokenizer)
    if "PADAUSER0" not in prompt or (system is not None and "PADASYSTEM0" not in prompt) or not suffix:
        return None
    if _adds_bos(tokenizer) and prompt.startswith(tokenizer.bos_token):
        prompt = prompt[len(tokenizer.bos_token):]  # llama.cpp adds this BOS itself
    prompt = prompt.replace("PADASYSTEM0", "{{ .System }}").replace("PADAUSER0", "{{ .Prompt }}")
    return prompt + "{{ .Response }}" + suffix


def _adds_bos(tokenizer: Any) -> bool:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(tokenizer.bos_token) and bool(ids) and ids[0] == tokenizer.bos_token_id

"""`python -m pada_local.export quantize SRC DST QUANT`: the child process that formats.quantize
starts, so that llama.cpp's quantizer runs outside the exporting process."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .formats import quantize_here
from .plan import LLAMA_FTYPES


def main(argv: Sequence[str]) -> int:
    if len(argv) == 4 and argv[0] == "quantize" and argv[3] in LLAMA_FTYPES:
        return quantize_here(argv[1], argv[2], argv[3])
    print("usage: python -m pada_local.export quantize SRC.gguf DST.gguf q4_0|q4_k_m", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

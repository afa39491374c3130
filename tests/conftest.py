"""Test-wide settings: offline tokenizers and models, and tests/ on sys.path for fixture modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED = Path(os.environ.get("LONGCONTEXT_SHARED", ROOT.parent / "shared"))

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "data" / "tokenizers" / "tiktoken"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Exported ONNX embeddings are cached in the checkout (gitignored), not in the user's home.
os.environ.setdefault("LONGCONTEXT_CACHE_DIR", str(ROOT / ".longcontext-cache"))

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

"""Lost-in-the-middle reordering and token-budget packing of retrieved passages."""

from longcontext.context.pack import PackResult, pack
from longcontext.context.passages import Passage, as_passage
from longcontext.context.reorder import STRATEGIES, reorder

__all__ = ["STRATEGIES", "PackResult", "Passage", "as_passage", "pack", "reorder"]

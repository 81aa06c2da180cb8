"""Running top-k over streamed blocks: the largest entries of each column of a matrix that is
only ever seen a block of rows at a time (neighbour search, top-activating examples)."""

from __future__ import annotations

import torch


def merge_top(
    top_val: torch.Tensor, top_idx: torch.Tensor, block: torch.Tensor, start: int | torch.Tensor, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the running top-`keep` rows per column with a new block whose first row has index
    `start` (or whose rows have the indices `start`): the block's own top-k first, so only 2*keep
    rows are ever concatenated."""
    block_val, block_pos = block.topk(min(keep, block.shape[0]), dim=0)
    pool_val = torch.cat([top_val, block_val.to(top_val.dtype)])
    pool_idx = torch.cat([top_idx, block_pos + start if isinstance(start, int) else start[block_pos]])
    merged_val, pos = pool_val.topk(min(keep, pool_val.shape[0]), dim=0)
    return merged_val, pool_idx.gather(0, pos)

"""LLaVA's modality- and length-grouped sampling of training samples."""

from __future__ import annotations

import random

from torch.utils.data import Sampler


class ModalityLengthGroupedSampler(Sampler[int]):
    """LLaVA's ``group_by_modality_length``: batches hold only image or only text samples, and
    similar lengths, in a random order that depends only on the seed and epoch."""

    def __init__(self, lengths: list[int], batch_size: int, world_size: int = 1, seed: int = 0):
        self.lengths, self.batch_size, self.world_size, self.seed = lengths, batch_size, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = random.Random(self.seed + self.epoch)
        megabatch = self.batch_size * self.world_size
        groups, leftovers = [], []
        for sign in (1, -1):
            indices = [i for i, length in enumerate(self.lengths) if (length > 0) == (sign > 0)]
            generator.shuffle(indices)
            for start in range(0, len(indices), megabatch):
                chunk = sorted(indices[start : start + megabatch], key=lambda i: -abs(self.lengths[i]))
                (groups if len(chunk) == megabatch else leftovers).append(chunk)
        generator.shuffle(groups)
        # incomplete groups go last (as LLaVA's sampler does), so only the final batch may mix modalities
        return iter(i for group in groups + leftovers for i in group)

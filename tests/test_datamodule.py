import random

import torch

from llmner.data.alignment import EncodedWindow, WindowEncoder
from llmner.data.datamodule import BucketBatchSampler


def test_bucket_sampler_covers_each_window_once_with_similar_lengths():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(1000)]
    sampler = BucketBatchSampler(lengths, batch_size=8, pool=10, seed=3)
    for _ in range(2):  # two epochs, different orders
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches of 8 from 1..100 spread ~75


def test_collate_pads_and_masks():
    a = EncodedWindow([1, 2, 3, 4], first=[0, 2], last=[1, 3], labels=[1, 0], sentence=0, offset=0)
    b = EncodedWindow([5], first=[0], last=[0], labels=[2], sentence=1, offset=3)
    encoder = WindowEncoder.__new__(WindowEncoder)  # collate needs only the pad id
    encoder.pad_id = 9
    batch = encoder.collate([a, b])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4], [5, 9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch["word_mask"].tolist() == [[True, True], [True, False]]
    assert batch["labels"].tolist() == [[1, 0], [2, 0]]
    assert batch["offset"].tolist() == [0, 3] and batch["last"].tolist() == [[1, 3], [0, 0]]
    assert batch["first"].dtype == torch.long

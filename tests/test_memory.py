"""Reference policy and the bounded memory bank."""
import pytest
import torch

from mast.common.references import ReferencePolicy
from mast.models.memory import MemoryBank


@pytest.mark.parametrize(
    "query,expected",
    [
        (1, [0]),
        (2, [0, 1]),
        (3, [0, 2]),
        (4, [0, 1, 3]),
        (5, [0, 2, 4]),
        (6, [0, 1, 3, 5]),  # 5 is long-term and t-1: counted once
        (8, [0, 3, 5, 7]),
        (10, [0, 5, 7, 9]),
        (1000, [0, 5, 995, 997, 999]),
    ],
)
def test_mast_policy(query, expected):
    assert ReferencePolicy.mast().references(query) == expected


def test_first_frame_has_no_references():
    assert ReferencePolicy.mast().references(0) == []


def test_crw_policy_first_frame_plus_twenty_previous():
    policy = ReferencePolicy.crw()
    assert policy.references(100) == [0] + list(range(80, 100))
    assert policy.references(7) == list(range(7))
    assert policy.capacity == 21


def test_policy_validation():
    with pytest.raises(ValueError, match="short_term"):
        ReferencePolicy((0,), (0, 1))
    with pytest.raises(ValueError, match="long_term"):
        ReferencePolicy((-1,), (1,))
    with pytest.raises(ValueError, match="query_index"):
        ReferencePolicy.mast().references(-1)


def frame(index):
    return torch.full((1, 2, 3, 3), float(index)), torch.full((1, 1, 3, 3), float(index))


def test_streaming_bank_is_bounded_and_serves_the_policy():
    policy = ReferencePolicy.mast()
    bank = MemoryBank(policy)
    for t in range(500):
        references = bank.references(t)
        assert [t - r.distance for r in references] == policy.references(t)
        for r in references:
            assert r.features[0, 0, 0, 0].item() == t - r.distance
        bank.add(t, *frame(t))
        assert len(bank) <= policy.capacity
    assert bank.indices == [0, 5, 495, 496, 497, 498, 499]


def test_training_clip_use():
    bank = MemoryBank(ReferencePolicy.mast())
    for index in (0, 5, 25, 27, 29):
        bank.add(index, *frame(index))
    assert [r.distance for r in bank.references(30)] == [30, 25, 5, 3, 1]


def test_bank_rejects_mismatched_entries():
    with pytest.raises(ValueError, match="share"):
        MemoryBank().add(0, torch.zeros(1, 2, 3, 3), torch.zeros(1, 1, 4, 3))

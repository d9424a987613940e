import pytest
import torch

from video_transformers.lit.multiview import AGGREGATIONS, aggregate_views


def _views():
    # video 0: 2 views, video 1: 3 views; 3 classes
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    video = torch.tensor([0, 0, 1, 1, 1])
    view = torch.tensor([0, 1, 0, 1, 2])
    labels = torch.tensor([0, 0, 2, 2, 2])
    return logits, video, view, labels


@pytest.mark.parametrize("rule", AGGREGATIONS)
def test_rules_by_hand(rule):
    logits, video, view, labels = _views()
    ids, scores, y, counts = aggregate_views(logits, video, view, labels, rule)
    score, reduce = rule.split("_")
    values = logits.softmax(-1) if score == "softmax" else logits
    fn = {"mean": lambda x: x.mean(0), "sum": lambda x: x.sum(0), "max": lambda x: x.max(0).values}[reduce]
    expected = torch.stack([fn(values[:2]), fn(values[2:])])
    assert ids.tolist() == [0, 1] and y.tolist() == [0, 2] and counts.tolist() == [2, 3]
    torch.testing.assert_close(scores, expected)


def test_views_split_across_batches_and_ranks_with_padding_duplicates():
    logits, video, view, labels = _views()
    _, expected, _, _ = aggregate_views(logits, video, view, labels)
    # rank 1 got views in another order, and the distributed sampler padded it with a repeat of view (0, 0)
    order = torch.tensor([4, 0, 2, 1, 3, 0])
    _, scores, y, counts = aggregate_views(logits[order], video[order], view[order], labels[order])
    torch.testing.assert_close(scores, expected)
    assert counts.tolist() == [2, 3]


def test_unknown_rule():
    logits, video, view, labels = _views()
    with pytest.raises(ValueError, match="softmax_mean"):
        aggregate_views(logits, video, view, labels, "softmax_median")

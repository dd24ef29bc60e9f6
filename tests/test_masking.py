"""Dynamic masking: how many tokens, which ones, what they become, reproducibility, frequency smoothing."""
import pytest
import torch

from tinydistil.masking import mask_tokens, token_weights

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, UNK, CLS, SEP, MASK]
VOCAB = 100


def _batch(b=16, length=24, seed=0):
    """[CLS] tokens [SEP] [PAD]... rows of random lengths; a few [UNK] inside."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((b, length), PAD)
    am = torch.zeros((b, length), dtype=torch.long)
    for r in range(b):
        n = int(torch.randint(4, length + 1, (1,), generator=g))
        ids[r, :n] = torch.randint(5, VOCAB, (n,), generator=g)
        ids[r, 0], ids[r, n - 1] = CLS, SEP
        if n > 4:
            ids[r, 2] = UNK
        am[r, :n] = 1
    return ids, am


def _weights(ids, smoothing=0.7):
    return token_weights(torch.bincount(ids.flatten(), minlength=VOCAB), smoothing, SPECIAL)


def _eligible(ids, am):
    special = torch.zeros(VOCAB, dtype=torch.bool)
    special[SPECIAL] = True
    return (~special[ids]) & am.bool()


@pytest.mark.parametrize("smoothing", [0.0, 0.7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_count_positions_and_labels(smoothing, seed):
    ids, am = _batch(seed=seed)
    elig = _eligible(ids, am)
    gen = torch.Generator().manual_seed(100 + seed)
    out, labels = mask_tokens(ids, am, _weights(ids, smoothing), MASK, gen)
    chosen = labels != -100
    assert int(chosen.sum()) == round(0.15 * int(elig.sum()))
    # never a special token ([CLS], [SEP], [UNK], [PAD]) nor a padded position
    assert not (chosen & ~elig).any()
    assert not (chosen & (am == 0)).any()
    # labels hold the original ids at chosen positions, -100 elsewhere
    assert torch.equal(labels[chosen], ids[chosen])
    assert (labels[~chosen] == -100).all()
    # positions that were not chosen are untouched
    assert torch.equal(out[~chosen], ids[~chosen])
    # inputs are not modified in place
    assert ids.shape == out.shape


def test_padding_tokens_with_nonzero_weight_are_not_chosen():
    # attention_mask alone must exclude positions, even when the id there is an ordinary token
    ids = torch.randint(5, VOCAB, (8, 20), generator=torch.Generator().manual_seed(3))
    am = torch.ones_like(ids)
    am[:, 10:] = 0
    w = token_weights(torch.ones(VOCAB), 0.0, SPECIAL)
    for s in range(20):
        _, labels = mask_tokens(ids, am, w, MASK, torch.Generator().manual_seed(s))
        assert (labels[:, 10:] == -100).all()
        assert int((labels != -100).sum()) == round(0.15 * 80)


def test_no_eligible_token_returns_unchanged():
    ids = torch.tensor([[CLS, SEP, PAD, PAD]])
    am = torch.tensor([[1, 1, 0, 0]])
    out, labels = mask_tokens(ids, am, token_weights(torch.ones(VOCAB), 0.7, SPECIAL), MASK,
                              torch.Generator().manual_seed(0))
    assert torch.equal(out, ids) and (labels == -100).all()


def test_replacement_shares_80_10_10_and_random_ids_not_special():
    ids, am = _batch(b=256, length=64, seed=5)
    gen = torch.Generator().manual_seed(7)
    out, labels = mask_tokens(ids, am, _weights(ids, 0.7), MASK, gen)
    chosen = labels != -100
    n = int(chosen.sum())
    assert n > 1000
    new, orig = out[chosen], ids[chosen]
    is_mask = new == MASK
    kept = new == orig
    rand = ~is_mask & ~kept
    # binomial std of a share at n~1200 is <= 0.012: these bounds are > 4 sigma wide (and the seed is fixed)
    assert 0.75 < is_mask.float().mean() < 0.85
    assert 0.06 < kept.float().mean() < 0.14  # includes random draws equal to the original (~0.1%)
    assert 0.06 < rand.float().mean() < 0.14
    # random replacements are ordinary vocabulary ids, never special ones
    special = torch.tensor(SPECIAL)
    assert not torch.isin(new[rand], special).any()
    assert ((new[rand] >= 5) & (new[rand] < VOCAB)).all()
    # random replacements are spread over the vocabulary (not one fixed id)
    assert len(torch.unique(new[rand])) > 50


def test_custom_shares_all_mask_and_all_random():
    ids, am = _batch(b=64, length=32, seed=6)
    w = _weights(ids, 0.0)
    out, labels = mask_tokens(ids, am, w, MASK, torch.Generator().manual_seed(0), 0.15, 1.0, 0.0, 0.0)
    chosen = labels != -100
    assert (out[chosen] == MASK).all()
    out, labels = mask_tokens(ids, am, w, MASK, torch.Generator().manual_seed(0), 0.15, 0.0, 0.0, 1.0)
    chosen = labels != -100
    assert not (out[chosen] == MASK).any()
    assert not torch.isin(out[chosen], torch.tensor(SPECIAL)).any()


def test_same_seed_same_output_different_seed_different_masks():
    ids, am = _batch(b=32, length=32, seed=8)
    w = _weights(ids, 0.7)
    a = mask_tokens(ids, am, w, MASK, torch.Generator().manual_seed(42))
    b = mask_tokens(ids, am, w, MASK, torch.Generator().manual_seed(42))
    c = mask_tokens(ids, am, w, MASK, torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1] != -100, c[1] != -100)


def test_token_weights_values():
    counts = torch.tensor([50, 0, 7, 3, 9, 1, 0, 1000, 10, 2])
    w = token_weights(counts, 0.7, [0, 3])
    assert w.dtype == torch.float32 and w.shape == (10,)
    expected = torch.tensor([max(int(c), 1) ** -0.7 for c in counts], dtype=torch.float64)
    expected[[0, 3]] = 0
    torch.testing.assert_close(w.double(), expected, rtol=1e-6, atol=0)
    # rarer (non-special) tokens weigh more
    order = [5, 9, 2, 8, 7]  # counts 1, 2, 7, 10, 1000
    assert all(w[a] > w[b] for a, b in zip(order, order[1:]))
    # unseen counts as 1
    assert w[1] == w[5] == 1.0
    # smoothing 0: uniform over non-special ids
    w0 = token_weights(counts, 0.0, [0, 3])
    assert (w0[[0, 3]] == 0).all() and (w0[[1, 2, 4, 5, 6, 7, 8, 9]] == 1).all()


def _choice_rates(smoothing, draws=300):
    """Per-occurrence chance of being chosen for a frequent token (id 10) and rare tokens (11..20)."""
    row = torch.tensor([10] * 90 + list(range(11, 21)))
    row = row[torch.randperm(100, generator=torch.Generator().manual_seed(0))]
    ids = row[None, :]
    am = torch.ones_like(ids)
    counts = torch.ones(VOCAB, dtype=torch.long)
    counts[10] = 1000
    counts[11:21] = 10
    w = token_weights(counts, smoothing, SPECIAL)
    freq = rare = 0
    for s in range(draws):
        _, labels = mask_tokens(ids, am, w, MASK, torch.Generator().manual_seed(s))
        chosen = labels[0] != -100
        freq += int((chosen & (row == 10)).sum())
        rare += int((chosen & (row != 10)).sum())
    return freq / (90 * draws), rare / (10 * draws)


def test_smoothing_zero_is_uniform():
    freq, rare = _choice_rates(0.0)
    assert freq == pytest.approx(0.15, abs=0.02)  # exactly 15 of 100 per draw
    assert rare == pytest.approx(0.15, abs=0.04)  # std ~0.007 over 3000 occurrences


def test_smoothing_07_prefers_rare_tokens():
    freq, rare = _choice_rates(0.7)
    # weights 10^-0.7 vs 1000^-0.7: a rare occurrence is 25x as likely per draw
    assert rare > 5 * freq
    assert rare > 0.5

"""runtime.adamw: the fused AdamW kernel (issue 28) follows the same update as the per-tensor loop, to float32
rounding, and the training loss on identical batches stays within 0.1 %."""
import copy

import torch

from tinydistil import runtime as R


def _run(opt_fn, model, batches):
    opt = opt_fn([{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.01},
                  {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}])
    losses = []
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, opt


def test_fused_adamw_matches_the_loop():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Flatten(), torch.nn.Linear(16 * 4, 32),
                                torch.nn.GELU(), torch.nn.LayerNorm(32), torch.nn.Linear(32, 5))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randint(0, 50, (8, 4), generator=g), torch.randint(0, 5, (8,), generator=g)) for _ in range(20)]
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    kw = dict(lr=3e-3, betas=(0.9, 0.98), eps=1e-6)
    la, oa = _run(lambda gr: torch.optim.AdamW(gr, foreach=False, **kw), a, batches)
    lb, ob = _run(lambda gr: R.adamw(gr, **kw), b, batches)
    assert ob.param_groups[0]["fused"] and not oa.param_groups[0].get("fused")
    assert la[0] == lb[0]
    for x, y in zip(la, lb):
        assert abs(x - y) <= 1e-3 * abs(x)  # <= 0.1 % on every one of the 20 identical batches
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    # the same state_dict layout: a checkpoint of either loads into the other
    _, oc = _run(lambda gr: R.adamw(gr, **kw), copy.deepcopy(model), batches[:1])
    oc.load_state_dict(oa.state_dict())


def test_adamw_falls_back_where_fused_is_unsupported():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float16))
    assert not R.adamw([p], lr=1e-3).param_groups[0]["fused"]

"""The chunked fused KL + CE behind `DistilLoss`: `chunked_kl_ce`.

It computes the soft-target KL and the masked-LM CE of `losses.py` from the hidden features and the vocabulary
projection weights, a chunk of rows at a time, with the gradient worked out during the forward pass (as fused
linear-loss kernels do), so the (rows x vocabulary) logits never exist for the whole batch; `DistilLoss(chunked=False)`
is its plain twin on full logits (tested equal). Where every row enters the KL (packed blocks, the default
objective) each chunk can run as one torch.compile'd kernel (`_fused_chunk`, `fused` on / auto).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def auto_chunk_rows(vocab_size: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk: one (rows x V) float32 buffer of ~64 MiB, rows a multiple of 64 (at least 16).
    `chunked_kl_ce` allocates its four chunk buffers once per call and reuses them, so the chunk size is set by
    the efficiency of the (rows x D) @ (D x V) products, which grows with the rows; measured in
    results/benchmarks/distill_roofline_fp32.txt (benchmarks/distill_throughput.py --variants ...,chunk<N>)."""
    rows = (64 * 2**20 // (4 * vocab_size)) // 64 * 64
    return max(16, rows)


def _project(f: torch.Tensor, w: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
             low: torch.Tensor | None = None) -> torch.Tensor:
    """f @ w.T + b written into the float32 buffer `out`: in place when the product is float32, else through the
    preallocated low-precision buffer `low` (same shape; no (rows x V) allocation per chunk)."""
    if w.dtype == torch.float32 and f.dtype == torch.float32:
        return torch.addmm(b, f, w.t(), out=out)
    return out.copy_(torch.addmm(b, f, w.t(), out=low))


def _fused_chunk(z: torch.Tensor, t: torch.Tensor, b: torch.Tensor, tb: torch.Tensor, labels: torch.Tensor,
                 inv_t: torch.Tensor, kl_scale: torch.Tensor, ce_scale: torch.Tensor, g_out: torch.Tensor):
    """One chunk of KL + CE with every row in the KL, as one pass of row reductions and one elementwise pass once
    compiled (`_compiled_chunk`); the eager loop of `_ChunkedKLCE` makes ~15 passes over its (c x V) buffers.

    z, t: (c, V) student and teacher logits without their biases, in the projections' dtype; b, tb: (V,) float32.
    labels: (c,), -100 = not masked. inv_t: 1 / T; kl_scale: alpha_kl * T / n_kl; ce_scale: alpha_mlm / n_ce
    (0-d float32 tensors, so a new batch is not a new compilation). Writes d(alpha_kl KL + alpha_mlm CE)/dz into
    g_out (c, V) and returns (sum over rows of KL(p_t || p_s), sum of -log p_s(label)), float32; softmaxes, sums and
    the gradient are computed in float32 whatever the logits' dtype. (The bias gradient, g's column sums, is left
    to the caller: inside the kernel that reduction across rows took as long as all the rest.)"""
    z = z.float() + b
    zt = z * inv_t
    tt = (t.float() + tb) * inv_t
    lpt = tt - torch.logsumexp(tt, -1, keepdim=True)
    lps = zt - torch.logsumexp(zt, -1, keepdim=True)
    lse = torch.logsumexp(z, -1, keepdim=True)
    pt = lpt.exp()
    kl = (pt * (lpt - lps)).sum()
    masked = labels != -100
    lab = labels.clamp(min=0)[:, None]
    ce = ((lse - z.gather(1, lab)).squeeze(1) * masked).sum()
    onehot = (torch.arange(z.shape[1], device=z.device)[None, :] == lab).float()
    g = (lps.exp() - pt) * kl_scale + ((z - lse).exp() - onehot) * (masked[:, None] * ce_scale)
    g_out.copy_(g)
    return kl, ce


_COMPILED: dict[str, object] = {}  # "chunk": the compiled _fused_chunk, or None once compiling it has failed


def _compiled_chunk():
    """`_fused_chunk` under torch.compile (inductor), built on first use; None where it cannot compile here (no C++
    compiler, say): then the eager loop runs, with one warning."""
    if "chunk" not in _COMPILED:
        _COMPILED["chunk"] = torch.compile(_fused_chunk, dynamic=False)
    return _COMPILED["chunk"]


def fused_chunks_apply(fused: str, device: torch.device | str, chunk_rows: int, vocab_size: int) -> bool:
    """Whether `chunked_kl_ce` runs the compiled fused chunk: fused "on" / "off", or "auto": on CPU where a chunk's
    logits have at least 2^22 entries (compiling takes seconds, which only large vocabulary products repay; tiny
    test models stay eager). On CUDA "auto" stays eager (the fp16 / bf16 GPU path is not measured with it)."""
    if fused == "auto":
        return torch.device(device).type == "cpu" and chunk_rows * vocab_size >= 2**22
    return fused == "on"


def _fused_forward(feats, weight, bias, t_feats, t_weight, t_bias, labels, temperature, alpha_kl, alpha_mlm,
                   chunk_size, mm, n_kl, n_ce):
    """The chunk loop of `_ChunkedKLCE` when every row enters the KL (packed blocks, the default objective), with
    `_fused_chunk` compiled: (grad_feats, grad_w, grad_b, kl_sum, ce_sum) float32, or None when it cannot compile.

    float32 gradients (fp32; fp16, whose gradients of size ~1/rows would underflow): each chunk's gradient goes into
    grad_feats / grad_w at once. bf16: every chunk's gradient is kept, (N x V) bf16 (half of one float32 chunk
    buffer per 1,000 rows), and the three gradient products run once over all rows after the loop: one long product
    instead of a product, a (V x D) cast and an add per chunk."""
    # one function on purpose (~60 lines): the fused loop and its preallocated buffers, visible together
    chunk = _compiled_chunk()
    if chunk is None:
        return None
    N, V = feats.shape[0], weight.shape[0]
    dev = feats.device
    w_mm, tw_mm = weight.to(mm), t_weight.to(mm)
    b32, tb32 = bias.float(), t_bias.float()
    keep = mm == torch.bfloat16
    gm = mm if keep else torch.float32
    n_buf = min(chunk_size, N)
    zbuf = torch.empty((n_buf, V), dtype=mm, device=dev)
    tbuf = torch.empty((n_buf, V), dtype=mm, device=dev)
    gbuf = torch.empty((N if keep else n_buf, V), dtype=gm, device=dev)
    f_mm = feats.to(mm)
    kl_sum = torch.zeros((), dtype=torch.float32, device=dev)
    ce_sum = torch.zeros((), dtype=torch.float32, device=dev)
    if not keep:
        w32 = weight.float()
        grad_feats = torch.empty_like(feats, dtype=torch.float32)
        grad_w = torch.empty_like(weight, dtype=torch.float32)  # the first chunk writes it
        grad_b = torch.zeros(V, dtype=torch.float32, device=dev)
    f32 = dict(dtype=torch.float32, device=dev)
    inv_t = torch.tensor(1.0 / temperature, **f32)
    kl_scale = torch.tensor(alpha_kl * temperature / n_kl, **f32)
    ce_scale = torch.tensor(alpha_mlm / max(n_ce, 1), **f32)
    for start in range(0, N, chunk_size):
        c = min(chunk_size, N - start)
        idx = slice(start, start + c)
        z = torch.mm(f_mm[idx], w_mm.t(), out=zbuf[:c])
        t = torch.mm(t_feats[idx].to(mm), tw_mm.t(), out=tbuf[:c])
        g = gbuf[idx] if keep else gbuf[:c]
        try:
            kl, ce = chunk(z, t, b32, tb32, labels[idx], inv_t, kl_scale, ce_scale, g)
        except Exception as e:  # inductor needs a C++ compiler (CPU) or triton (GPU): the eager loop does this call
            import warnings
            warnings.warn(f"tinydistil: torch.compile of the fused KL+CE chunk failed ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else ''}); the eager chunk loop runs instead "
                          "(fused_loss off skips the attempt)", RuntimeWarning, stacklevel=2)
            _COMPILED["chunk"] = None
            return None
        kl_sum += kl
        ce_sum += ce
        if not keep:
            grad_b += g.sum(0)
            torch.mm(g, w32, out=grad_feats[idx])
            f = f_mm[idx].float()
            torch.mm(g.t(), f, out=grad_w) if start == 0 else grad_w.addmm_(g.t(), f)
    if keep:  # bf16 products accumulate in float32 and round once; the bias gradient as a product too (a bf16
        # sum(0) with dtype=float32 first copies the whole gradient)
        grad_feats = torch.mm(gbuf, w_mm).float()
        grad_w = torch.mm(gbuf.t(), f_mm).float()
        grad_b = torch.mm(torch.ones((1, N), dtype=gm, device=dev), gbuf)[0].float()
    return grad_feats, grad_w, grad_b, kl_sum, ce_sum


def _eager_kl_chunk(z, t_feats, sel, tw_mm, tb_mm, bufs, low, temperature, scale):
    """The eager loop's KL for one chunk: (sum over the selected rows of KL(p_t || p_s) at temperature T,
    d(scaled KL)/dz (c, V) float32). z: (c, V) student logits (in bufs[0]); t_feats: (c, D_t) teacher features;
    sel: (c,) bool rows in the KL; scale = alpha_kl * T / n_kl. Works in place in bufs[1:4] (and `low`)."""
    c = z.shape[0]
    every = bool(sel.all())
    n = c if every else int(sel.sum())
    ft = (t_feats if every else t_feats[sel]).to(tw_mm.dtype)
    lt = _project(ft, tw_mm, tb_mm, bufs[1, :n], None if low is None else low[:n]).div_(temperature)
    lpt = torch.log_softmax(lt, dim=-1, out=bufs[2, :n])
    torch.div(z if every else z[sel], temperature, out=bufs[1, :n])
    lps = torch.log_softmax(bufs[1, :n], dim=-1, out=bufs[3, :n])
    diff = torch.sub(lpt, lps, out=bufs[1, :n])
    pt = lpt.exp_()
    kl = torch.dot(pt.view(-1), diff.view(-1))  # sum p_t (log p_t - log p_s)
    gk = lps.exp_().sub_(pt).mul_(scale)  # d(T^2 KL / n)/dz = T (p_s - p_t) / n, in place over lps
    if every:
        return kl, gk
    g = torch.zeros_like(z)
    g[sel] = gk
    return kl, g


def _eager_ce_chunk(z, lab_c, g, scale):
    """The eager loop's masked-LM CE for one chunk: (sum of -log p_s(label) over its masked rows, the chunk's
    gradient with scale * d(CE sum)/dz added to `g` (None: no KL gradient yet)). z: (c, V) float32; lab_c: (c,)."""
    pos = torch.nonzero(lab_c != -100).flatten()
    if not len(pos):
        return torch.zeros((), dtype=torch.float32, device=z.device), g
    lab = lab_c[pos]
    lc = F.log_softmax(z[pos], dim=-1)
    ce = -lc.gather(1, lab[:, None]).sum()
    pc = lc.exp_()
    pc[torch.arange(len(lab), device=pc.device), lab] -= 1.0
    if g is None and len(pos) == z.shape[0]:  # every row of the chunk is masked (the MLM-only rows)
        return ce, pc.mul_(scale)
    if g is None:
        g = torch.zeros_like(z)
    g.index_add_(0, pos, pc, alpha=scale)
    return ce, g


class _ChunkedKLCE(torch.autograd.Function):
    """Forward returns (alpha_kl * KL + alpha_mlm * CE, KL, CE); only the first carries a gradient."""

    @staticmethod
    def forward(ctx, feats, weight, bias, t_feats, t_weight, t_bias, kl_rows, labels,
                temperature, alpha_kl, alpha_mlm, chunk_size, fused=False):
        device = feats.device.type
        # Under autocast (bf16 on CPU / GPU, fp16 on a T4) the projections run in that dtype, as autocast would
        # run them; softmax, KL, CE and the accumulated gradients stay float32.
        mm = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        with torch.autocast(device, enabled=False):
            return _ChunkedKLCE._forward(ctx, feats, weight, bias, t_feats, t_weight, t_bias, kl_rows, labels,
                                         temperature, alpha_kl, alpha_mlm, chunk_size, mm, fused)

    @staticmethod
    def _forward(ctx, feats, weight, bias, t_feats, t_weight, t_bias, kl_rows, labels,
                 temperature, alpha_kl, alpha_mlm, chunk_size, mm, fused):
        # one function on purpose (~70 lines): the chunk loop and the buffers it reuses, visible together
        n_kl = int(kl_rows.sum())
        ce_rows = labels != -100
        n_ce = int(ce_rows.sum())
        use_kl = t_feats is not None and n_kl > 0
        use_ce = n_ce > 0
        out = None
        if fused and t_feats is not None and n_kl == kl_rows.numel():
            out = _fused_forward(feats, weight, bias, t_feats, t_weight, t_bias, labels, temperature, alpha_kl,
                                 alpha_mlm, chunk_size, mm, n_kl, n_ce)
        if out is not None:
            grad_feats, grad_w, grad_b, kl_sum, ce_sum = out
            return _ChunkedKLCE._finish(ctx, feats, weight, bias, grad_feats, grad_w, grad_b, kl_sum, ce_sum,
                                        True, n_kl, n_ce, temperature, alpha_kl, alpha_mlm)
        rows = torch.nonzero((kl_rows if use_kl else torch.zeros_like(kl_rows)) | ce_rows).flatten()
        w_mm, b_mm = weight.to(mm), bias.to(mm)
        # gradient matmuls: in bf16 under bf16 autocast, else float32 (in fp16, gradients of size ~1/rows
        # would underflow: GradScaler's scale only reaches them in backward)
        gm = torch.bfloat16 if mm == torch.bfloat16 else torch.float32
        w32 = weight.float()
        if use_kl:
            tw_mm, tb_mm = t_weight.to(mm), t_bias.to(mm)
        grad_feats = torch.zeros_like(feats, dtype=torch.float32)
        grad_w = torch.zeros_like(weight, dtype=torch.float32)
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=feats.device)
        kl_sum = torch.zeros((), dtype=torch.float32, device=feats.device)
        ce_sum = torch.zeros((), dtype=torch.float32, device=feats.device)
        # Four (chunk x V) float32 buffers, allocated once and reused by every chunk (no allocation, page faults
        # or temporaries of that size inside the loop): A student logits, B scratch, C teacher log-probs then
        # probabilities, D student log-probs at T then the KL gradient.
        n_buf = min(chunk_size, len(rows))
        bufs = torch.empty((4 if use_kl else 1, n_buf, weight.shape[0]), dtype=torch.float32, device=feats.device)
        # Under bf16 three more, reused the same way: a (chunk x V) bf16 buffer for the projections' products and
        # then the chunk's gradient, and (V x D) bf16 and float32 ones for its weight gradient. Allocated per chunk
        # instead (the casts and a mixed-dtype add_ allocate), each is tens of MB of fresh memory to page in, which
        # cost more than the bf16 matrix products themselves.
        low = wlow = w32buf = None
        if mm != torch.float32:
            low = torch.empty((n_buf, weight.shape[0]), dtype=mm, device=feats.device)
        if gm == torch.bfloat16:
            wlow = torch.empty(weight.shape, dtype=mm, device=feats.device)
            w32buf = torch.empty(weight.shape, dtype=torch.float32, device=feats.device)
        # every row selected (packed blocks, or the masked rows only): chunks are slices, not gathers
        contiguous = len(rows) == feats.shape[0]
        for start in range(0, len(rows), chunk_size):
            c = min(chunk_size, len(rows) - start)
            idx = slice(start, start + c) if contiguous else rows[start:start + c]
            f = feats[idx].to(mm)
            z = _project(f, w_mm, b_mm, bufs[0, :c], None if low is None else low[:c])  # (c, V) student logits, float32
            g = None  # d(loss)/dz for this chunk
            if use_kl:
                kl, g = _eager_kl_chunk(z, t_feats[idx], kl_rows[idx], tw_mm, tb_mm, bufs, low, temperature,
                                        alpha_kl * temperature / n_kl)
                kl_sum += kl
            if use_ce:
                ce, g = _eager_ce_chunk(z, labels[idx], g, alpha_mlm / n_ce)
                ce_sum += ce
            if g is None:
                continue
            grad_b += g.sum(0)
            if gm == torch.float32:
                if contiguous:
                    torch.mm(g, w32, out=grad_feats[idx])
                else:
                    grad_feats[idx] = g @ w32
                grad_w.addmm_(g.t(), f.float())
            else:  # bf16 has float32's range: the small per-row gradients do not underflow
                g = low[:c].copy_(g)
                grad_feats[idx] = (g @ w_mm).float()
                grad_w += w32buf.copy_(torch.mm(g.t(), f, out=wlow))
        return _ChunkedKLCE._finish(ctx, feats, weight, bias, grad_feats, grad_w, grad_b, kl_sum, ce_sum,
                                    use_kl, n_kl, n_ce, temperature, alpha_kl, alpha_mlm)

    @staticmethod
    def _finish(ctx, feats, weight, bias, grad_feats, grad_w, grad_b, kl_sum, ce_sum, use_kl, n_kl, n_ce,
                temperature, alpha_kl, alpha_mlm):
        kl = kl_sum * temperature**2 / max(n_kl, 1) if use_kl else kl_sum
        ce = ce_sum / max(n_ce, 1)
        ctx.save_for_backward(grad_feats.to(feats.dtype), grad_w.to(weight.dtype), grad_b.to(bias.dtype))
        ctx.mark_non_differentiable(kl, ce)
        return alpha_kl * kl + alpha_mlm * ce, kl, ce

    @staticmethod
    def backward(ctx, grad_total, _gkl, _gce):
        gf, gw, gb = ctx.saved_tensors
        if grad_total.numel() == 1 and float(grad_total) == 1.0:  # loss.backward() without a scaler: no copies
            return gf, gw, gb, *([None] * 10)
        return gf * grad_total, gw * grad_total, gb * grad_total, *([None] * 10)


def chunked_kl_ce(feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *,
                  teacher_feats: torch.Tensor | None = None, teacher_weight: torch.Tensor | None = None,
                  teacher_bias: torch.Tensor | None = None, kl_rows: torch.Tensor, labels: torch.Tensor,
                  temperature: float = 1.0, alpha_kl: float = 0.0, alpha_mlm: float = 1.0, chunk_size: int = 0,
                  fused: str = "off"):
    """(alpha_kl * KL + alpha_mlm * CE, KL, CE) without materialising all logits at once.

    feats: (N, D) student features entering the vocabulary projection (weight (V, D), bias (V,)).
    teacher_feats: (N, D_t) teacher features (no gradient) with teacher_weight/bias; None skips KL.
    kl_rows: (N,) bool rows that enter the KL. labels: (N,) MLM labels, -100 = not masked.
    chunk_size: rows per chunk; 0 picks `auto_chunk_rows`.
    fused: "on" / "off" / "auto" (`fused_chunks_apply`): where every row enters the KL, each chunk's softmaxes, KL,
    CE and gradient run as one compiled kernel (`_fused_chunk`) instead of the eager loop's ~15 passes.
    Equal to `soft_target_kl` and `mlm_cross_entropy` on the full logits, in value and gradient.
    """
    if chunk_size <= 0:
        chunk_size = auto_chunk_rows(weight.shape[0], weight.device)
    if fused not in ("on", "off", "auto"):
        raise ValueError(f"fused must be on, off or auto, not {fused!r}")
    use_fused = fused_chunks_apply(fused, feats.device, min(chunk_size, feats.shape[0]), weight.shape[0])
    if teacher_feats is not None:
        teacher_feats = teacher_feats.detach()
        teacher_weight, teacher_bias = teacher_weight.detach(), teacher_bias.detach()
    return _ChunkedKLCE.apply(feats, weight, bias, teacher_feats, teacher_weight, teacher_bias,
                              kl_rows, labels, float(temperature), float(alpha_kl), float(alpha_mlm), int(chunk_size),
                              use_fused)

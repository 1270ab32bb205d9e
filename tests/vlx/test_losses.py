"""Each loss against a naive loop-by-loop reference: values and gradients (float64)."""

import math

import pytest
import torch
import torch.nn.functional as F

from vlx.config import ConfigError
from vlx.losses import LOSSES, ClipLoss, FilipLoss, IntraModalLoss, SigLipLoss, SoftLabelClipLoss, build_loss, nt_xent


@pytest.fixture(autouse=True)
def float64():
    """Compare in double precision; restore the default so other test files are unaffected."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def feats(n, e, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, e, generator=g), dim=-1).requires_grad_(True)


def dot(x, y):
    return sum(float(p) * float(q) for p, q in zip(x, y))


def logsumexp(vals):
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))


# ---- naive references (python floats, one pair at a time) ---------------------------------
def ref_nce(q, k, scale, pos):
    """mean_i -mean_{j in pos[i]} log softmax_j(scale <q_i, k_j>)"""
    total = 0.0
    for i in range(len(q)):
        row = [scale * dot(q[i], k[j]) for j in range(len(k))]
        lse = logsumexp(row)
        total += -sum(row[j] - lse for j in pos[i]) / len(pos[i])
    return total / len(q)


def ref_clip(a, b, scale, ids=None):
    n = len(a)
    pos = [[j for j in range(n) if (ids[i] == ids[j] if ids is not None else i == j)] for i in range(n)]
    return (ref_nce(a, b, scale, pos) + ref_nce(b, a, scale, pos)) / 2


def ref_siglip(a, b, t, bias):
    n = len(a)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            x = z * (t * dot(a[i], b[j]) + bias)
            total += math.log1p(math.exp(-x))  # -log sigmoid(x)
    return total / n


def ref_filip(A, B, am, bm, scale):
    n = len(A)

    def score(X, Y, xm, ym, i, j):  # mean over valid tokens of X_i of max over valid tokens of Y_j
        vals = [max(dot(X[i][k], Y[j][l]) for l in range(len(Y[j])) if ym[j][l]) for k in range(len(X[i])) if xm[i][k]]
        return sum(vals) / len(vals)

    def nce(X, Y, xm, ym):
        tot = 0.0
        for i in range(n):
            row = [scale * score(X, Y, xm, ym, i, j) for j in range(n)]
            tot += logsumexp(row) - row[i]
        return tot / n

    return (nce(A, B, am, bm) + nce(B, A, bm, am)) / 2


def ref_nt_xent(a, b, tau):
    z = [F.normalize(x, dim=0) for x in list(a) + list(b)]
    n = len(a)
    tot = 0.0
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        row = {j: dot(z[i], z[j]) / tau for j in range(2 * n) if j != i}
        tot += logsumexp(list(row.values())) - row[p]
    return tot / (2 * n)


def ref_soft(a, b, scale, alpha):
    n = len(a)

    def direction(q, k):
        tot = 0.0
        for i in range(n):
            row = [scale * dot(q[i], k[j]) for j in range(n)]
            lse = logsumexp(row)
            tgt = [(1 - alpha) if j == i else alpha / (n - 1) for j in range(n)]
            tot += -sum(t * (r - lse) for t, r in zip(tgt, row))
        return tot / n

    return (direction(a, b) + direction(b, a)) / 2


def grads(fn, *xs):
    """Gradients of a torch loss w.r.t. xs via autograd."""
    for x in xs:
        x.grad = None
    fn().backward()
    return [x.grad.clone() for x in xs]


def numeric_grad(f, x, eps=1e-6):
    """Central differences of a float-valued function of tensor x (the naive side's gradient)."""
    g = torch.zeros_like(x)
    flat = x.detach().clone().reshape(-1)
    for i in range(flat.numel()):
        old = float(flat[i])
        flat[i] = old + eps
        fp = f(flat.view_as(x))
        flat[i] = old - eps
        fm = f(flat.view_as(x))
        flat[i] = old
        g.view(-1)[i] = (fp - fm) / (2 * eps)
    return g


# ---- tests --------------------------------------------------------------------------------
def test_clip_matches_reference_value_and_grad():
    a, b = feats(6, 5, 0), feats(6, 5, 1)
    scale = torch.tensor(7.0, requires_grad=True)
    loss = ClipLoss()(a, b, scale)
    assert float(loss.detach()) == pytest.approx(ref_clip(a.detach(), b.detach(), 7.0), abs=1e-10)
    ga, gb, gs = grads(lambda: ClipLoss()(a, b, scale), a, b, scale)
    na = numeric_grad(lambda x: ref_clip(x, b.detach(), 7.0), a)
    nb = numeric_grad(lambda x: ref_clip(a.detach(), x, 7.0), b)
    assert torch.allclose(ga, na, atol=1e-7) and torch.allclose(gb, nb, atol=1e-7)
    eps = 1e-6
    ns = (ref_clip(a.detach(), b.detach(), 7.0 + eps) - ref_clip(a.detach(), b.detach(), 7.0 - eps)) / (2 * eps)
    assert float(gs) == pytest.approx(ns, abs=1e-7)


def test_clip_multi_positive_ids():
    a, b = feats(7, 4, 2), feats(7, 4, 3)
    ids = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    loss = ClipLoss()(a, b, 5.0, ids=ids)
    assert float(loss.detach()) == pytest.approx(ref_clip(a.detach(), b.detach(), 5.0, ids.tolist()), abs=1e-10)
    ga, gb = grads(lambda: ClipLoss()(a, b, 5.0, ids=ids), a, b)
    na = numeric_grad(lambda x: ref_clip(x, b.detach(), 5.0, ids.tolist()), a)
    nb = numeric_grad(lambda x: ref_clip(a.detach(), x, 5.0, ids.tolist()), b)
    assert torch.allclose(ga, na, atol=1e-7) and torch.allclose(gb, nb, atol=1e-7)
    # all-distinct ids are the one-positive loss; a shared id changes the value
    assert float(ClipLoss()(a, b, 5.0, ids=torch.arange(7)).detach()) == pytest.approx(
        float(ClipLoss()(a, b, 5.0).detach()), abs=1e-12
    )
    assert abs(float(loss.detach()) - float(ClipLoss()(a, b, 5.0).detach())) > 1e-3


def test_clip_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        ClipLoss()(torch.randn(4, 3), torch.randn(5, 3), 1.0)
    with pytest.raises(ValueError, match="ids has 3 entries"):
        ClipLoss()(torch.randn(4, 3), torch.randn(4, 3), 1.0, ids=torch.arange(3))


def test_siglip_matches_reference():
    a, b = feats(5, 4, 4), feats(5, 4, 5)
    t = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-3.0, requires_grad=True)
    loss = SigLipLoss()(a, b, t, bias)
    assert float(loss.detach()) == pytest.approx(ref_siglip(a.detach(), b.detach(), 10.0, -3.0), abs=1e-10)
    ga, gbias = grads(lambda: SigLipLoss()(a, b, t, bias), a, bias)
    na = numeric_grad(lambda x: ref_siglip(x, b.detach(), 10.0, -3.0), a)
    assert torch.allclose(ga, na, atol=1e-6)
    eps = 1e-6
    nbias = (
        ref_siglip(a.detach(), b.detach(), 10.0, -3.0 + eps) - ref_siglip(a.detach(), b.detach(), 10.0, -3.0 - eps)
    ) / (2 * eps)
    assert float(gbias) == pytest.approx(nbias, abs=1e-6)


def test_filip_matches_reference_and_ignores_padding():
    g = torch.Generator().manual_seed(6)
    A = F.normalize(torch.randn(4, 3, 5, generator=g), dim=-1).requires_grad_(True)
    B = F.normalize(torch.randn(4, 4, 5, generator=g), dim=-1).requires_grad_(True)
    am = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    bm = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    loss = FilipLoss()(A, B, am, bm, 4.0)
    want = ref_filip(A.detach(), B.detach(), am.tolist(), bm.tolist(), 4.0)
    assert float(loss.detach()) == pytest.approx(want, abs=1e-10)
    gA, gB = grads(lambda: FilipLoss()(A, B, am, bm, 4.0), A, B)
    nA = numeric_grad(lambda x: ref_filip(x, B.detach(), am.tolist(), bm.tolist(), 4.0), A)
    assert torch.allclose(gA, nA, atol=1e-6)
    assert torch.all(gA[~am] == 0) and torch.all(gB[~bm] == 0)  # padded tokens get no gradient
    # garbage (even huge) in padded slots changes nothing
    A2, B2 = A.detach().clone(), B.detach().clone()
    A2[~am], B2[~bm] = 50.0, 50.0
    assert float(FilipLoss()(A2, B2, am, bm, 4.0)) == pytest.approx(want, abs=1e-10)
    # no masks = all tokens valid
    full = FilipLoss()(A, B, None, None, 4.0)
    ones = lambda X: [[True] * X.shape[1]] * X.shape[0]
    assert float(full.detach()) == pytest.approx(ref_filip(A.detach(), B.detach(), ones(A), ones(B), 4.0), abs=1e-10)


def test_intra_modal_with_queue():
    a, b = feats(4, 3, 7), feats(4, 3, 8)
    qa, qb = F.normalize(torch.randn(3, 3), dim=-1), F.normalize(torch.randn(3, 3), dim=-1)
    loss = IntraModalLoss()(a, b, 6.0, qa, qb)
    keys_b, keys_a = torch.cat([b.detach(), qb]), torch.cat([a.detach(), qa])
    pos = [[i] for i in range(4)]
    want = (ref_nce(a.detach(), keys_b, 6.0, pos) + ref_nce(b.detach(), keys_a, 6.0, pos)) / 2
    assert float(loss.detach()) == pytest.approx(want, abs=1e-10)
    (ga,) = grads(lambda: IntraModalLoss()(a, b, 6.0, qa, qb), a)
    na = numeric_grad(
        lambda x: (ref_nce(x, keys_b, 6.0, pos) + ref_nce(b.detach(), torch.cat([x, qa]), 6.0, pos)) / 2, a
    )
    assert torch.allclose(ga, na, atol=1e-7)
    # without queues it is the CLIP loss between the two views
    assert float(IntraModalLoss()(a, b, 6.0).detach()) == pytest.approx(
        float(ClipLoss()(a, b, 6.0).detach()), abs=1e-12
    )


def test_nt_xent_matches_reference():
    g = torch.Generator().manual_seed(9)
    a = torch.randn(5, 4, generator=g).requires_grad_(True)  # unnormalised: nt_xent normalises
    b = torch.randn(5, 4, generator=g)
    assert float(nt_xent(a, b, 0.2).detach()) == pytest.approx(ref_nt_xent(a.detach(), b, 0.2), abs=1e-10)
    (ga,) = grads(lambda: nt_xent(a, b, 0.2), a)
    na = numeric_grad(lambda x: ref_nt_xent(x, b, 0.2), a)
    assert torch.allclose(ga, na, atol=1e-6)


def test_soft_label_matches_reference_and_torch_label_smoothing():
    a, b = feats(6, 4, 10), feats(6, 4, 11)
    loss = SoftLabelClipLoss(0.2)(a, b, 8.0)
    assert float(loss.detach()) == pytest.approx(ref_soft(a.detach(), b.detach(), 8.0, 0.2), abs=1e-10)
    (ga,) = grads(lambda: SoftLabelClipLoss(0.2)(a, b, 8.0), a)
    na = numeric_grad(lambda x: ref_soft(x, b.detach(), 8.0, 0.2), a)
    assert torch.allclose(ga, na, atol=1e-7)
    # PyramidCLIP's (1-a, a/(N-1)) targets equal torch's uniform label smoothing with eps = a N/(N-1)
    logits = 8.0 * a.detach() @ b.detach().T
    lbl = torch.arange(6)
    eps = 0.2 * 6 / 5
    torch_ls = (
        F.cross_entropy(logits, lbl, label_smoothing=eps) + F.cross_entropy(logits.T, lbl, label_smoothing=eps)
    ) / 2
    assert float(loss.detach()) == pytest.approx(float(torch_ls), abs=1e-10)
    assert float(SoftLabelClipLoss(0.0)(a, b, 8.0).detach()) == pytest.approx(
        float(ClipLoss()(a, b, 8.0).detach()), abs=1e-12
    )
    with pytest.raises(ConfigError, match="smoothing"):
        SoftLabelClipLoss(1.0)


def test_soft_label_with_ids_spreads_mass_over_positives():
    a, b = feats(5, 3, 12), feats(5, 3, 13)
    ids = torch.tensor([0, 0, 1, 2, 2])
    loss = SoftLabelClipLoss(0.3)(a, b, 4.0, ids=ids)
    logits = (4.0 * a @ b.T).detach()

    def direction(L):
        tot = 0.0
        for i in range(5):
            P = [j for j in range(5) if ids[j] == ids[i]]
            lp = L[i].log_softmax(-1)
            tot += -sum((0.7 / len(P) if j in P else 0.3 / (5 - len(P))) * float(lp[j]) for j in range(5))
        return tot / 5

    assert float(loss.detach()) == pytest.approx((direction(logits) + direction(logits.T)) / 2, abs=1e-10)


def test_registry_and_build_loss():
    assert isinstance(build_loss("clip"), ClipLoss)
    assert isinstance(build_loss("siglip"), SigLipLoss)
    assert isinstance(build_loss("filip"), FilipLoss)
    assert isinstance(build_loss("intra"), IntraModalLoss)
    s = build_loss("soft_clip", smoothing=0.25)
    assert isinstance(s, SoftLabelClipLoss) and s.smoothing == 0.25
    assert {"clip", "siglip", "filip", "intra", "soft_clip"} <= set(LOSSES.names())
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        build_loss("nope")


def test_losses_keep_dtype_and_train_a_toy_model():
    """float32 in, float32 out; and gradient descent on ClipLoss actually aligns the pairs."""
    torch.manual_seed(0)
    x = torch.randn(16, 8, dtype=torch.float32)
    enc_a, enc_b = torch.nn.Linear(8, 4).float(), torch.nn.Linear(8, 4).float()
    opt = torch.optim.Adam(list(enc_a.parameters()) + list(enc_b.parameters()), lr=0.05)
    first = None
    for _ in range(60):
        a = F.normalize(enc_a(x), dim=-1)
        b = F.normalize(enc_b(x + 0.05 * torch.randn_like(x)), dim=-1)
        loss = ClipLoss()(a, b, torch.tensor(10.0, dtype=torch.float32))
        assert loss.dtype == torch.float32
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


@pytest.mark.parametrize("name", ["clip", "clip_ids", "siglip", "soft_clip", "filip", "intra", "nt_xent"])
def test_losses_under_bf16_autocast_equal_float32(name):
    """Features as a bf16 autocast step produces them; the loss under CPU bf16 autocast equals
    the float32 loss of the same bf16 values (logits are not rounded to bf16: at scale 100 a
    bf16 logit moves in steps of 0.5)."""
    g = torch.Generator().manual_seed(3)
    n = 12
    a = F.normalize(torch.randn(n, 16, generator=g), dim=-1).bfloat16()
    b = F.normalize(a.double() + 1.5 * torch.randn(n, 16, generator=g), dim=-1).bfloat16()
    ta = F.normalize(torch.randn(n, 5, 16, generator=g), dim=-1).bfloat16()
    tb = F.normalize(torch.randn(n, 3, 16, generator=g), dim=-1).bfloat16()
    ids = torch.tensor([0, 1, 2, 0, 3, 4, 1, 5, 6, 7, 8, 9])
    scale = torch.tensor(100.0, dtype=torch.float32)
    calls = {
        "clip": lambda a, b, ta, tb: ClipLoss()(a, b, scale),
        "clip_ids": lambda a, b, ta, tb: ClipLoss()(a, b, scale, ids=ids),
        "siglip": lambda a, b, ta, tb: SigLipLoss()(a, b, scale, torch.tensor(-10.0, dtype=torch.float32)),
        "soft_clip": lambda a, b, ta, tb: SoftLabelClipLoss(0.1)(a, b, scale, ids=ids),
        "filip": lambda a, b, ta, tb: FilipLoss()(ta, tb, None, None, scale),
        "intra": lambda a, b, ta, tb: IntraModalLoss()(a, b, scale),
        "nt_xent": lambda a, b, ta, tb: nt_xent(a, b, 0.01),
    }
    ref = calls[name](a.float(), b.float(), ta.float(), tb.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = calls[name](a, b, ta, tb)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(ref), rel=1e-5, abs=1e-5)


def test_filip_column_chunks_equal_one_block():
    """FILIP in checkpointed column chunks (one similarity row each) = one block: value and grads."""
    g = torch.Generator().manual_seed(4)
    ta = F.normalize(torch.randn(6, 3, 8, generator=g), dim=-1).requires_grad_(True)
    tb = F.normalize(torch.randn(6, 4, 8, generator=g), dim=-1).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    out = []
    for max_elements in (2**26, 1):
        loss = FilipLoss(max_elements)(ta, tb, None, mask, 7.0)
        ga, gb = torch.autograd.grad(loss, (ta, tb))
        out.append((loss, ga, gb))
    for x, y in zip(*out):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", [ClipLoss, SigLipLoss, SoftLabelClipLoss])
def test_id_scope_is_checked(cls):
    with pytest.raises(ValueError, match="id_scope must be 'global' or 'local'"):
        cls(id_scope="rank")

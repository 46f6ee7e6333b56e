"""LML-IQA's pieces against direct, loop-based references: loss, saliency, EMA, schedules."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmliqa import presets
from lmliqa.models.network import build_model
from lmliqa.train.config import TrainConfig
from lmliqa.train.engine import make_scheduler, param_groups
from lmliqa.train.lml import EMATeacher, LMLModel
from lmliqa.train.losses import local_manifold_loss
from lmliqa.train.saliency import box_pool, salient_index, vit_cls_attention


def loop_reference(q, k_all, salient, tau, offset=0):
    """method.md §3.5 written term by term: one anchor at a time, sums over explicit index sets."""
    B, N, _ = q.shape
    G = k_all.shape[0]
    total, count = 0.0, 0
    for i in range(B):
        gi, s = offset + i, int(salient[i])
        for n in range(N):
            if n == s:
                continue
            pos = torch.exp(q[i, n] @ k_all[gi, s] / tau)
            intra = sum(torch.exp(q[i, n] @ k_all[gi, m] / tau) for m in range(N) if m not in (n, s))
            inter = sum(torch.exp(q[i, n] @ k_all[j, m] / tau) for j in range(G) if j != gi for m in range(N))
            total = total - torch.log(pos / (pos + intra + inter))
            count += 1
    return total / count


def unit(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("B,N,tau", [(3, 4, 0.1), (2, 5, 0.07), (4, 3, 0.2)])
def test_lml_loss_matches_loop_reference_values_and_gradients(B, N, tau):
    q = unit(B, N, 16, seed=1).requires_grad_(True)
    k = unit(B, N, 16, seed=2)
    salient = torch.tensor([(3 * i + 1) % N for i in range(B)])
    ours = local_manifold_loss(q, k, salient, tau)
    q2 = q.detach().clone().requires_grad_(True)
    ref = loop_reference(q2, k, salient, tau)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(q.grad.double(), q2.grad, rtol=1e-5, atol=1e-7)


def test_lml_loss_with_global_keys_counts_other_ranks_as_negatives():
    B, N, tau = 2, 4, 0.1
    q = unit(B, N, 8, seed=3)
    k_global = unit(3 * B, N, 8, seed=4)   # 3 "ranks"; this one holds rows 2..3
    salient = torch.tensor([0, 3])
    ours = local_manifold_loss(q, k_global[2:4], salient, tau, k_global=k_global, offset=2)
    assert ours.item() == pytest.approx(loop_reference(q, k_global, salient, tau, offset=2).item(), rel=1e-6)
    alone = local_manifold_loss(q, k_global[2:4], salient, tau)
    assert alone.item() < ours.item()  # more negatives -> a larger loss for the same embeddings


def test_lml_loss_is_small_when_anchors_sit_on_their_salient_crop():
    B, N = 3, 4
    k = unit(B, N, 32, seed=5)
    salient = torch.tensor([1, 0, 2])
    q = k[torch.arange(B), salient][:, None].expand(B, N, 32).clone()
    assert local_manifold_loss(q, k, salient, 0.05).item() < 1e-3
    assert local_manifold_loss(unit(B, N, 32, seed=6), k, salient, 0.05).item() > 1.0


def test_box_pool_is_the_area_weighted_mean():
    attn = torch.arange(16, dtype=torch.float64).reshape(1, 4, 4)
    # one whole cell; the left half; a box straddling 4 cells with weights 1/4 each
    boxes = torch.tensor([[[0.0, 0.0, 0.25, 0.25], [0.0, 0.0, 0.5, 1.0], [0.125, 0.125, 0.375, 0.375]]])
    pooled = box_pool(attn, boxes)[0].tolist()
    assert pooled[0] == pytest.approx(0.0)
    assert pooled[1] == pytest.approx(np.mean([0, 1, 4, 5, 8, 9, 12, 13]))
    assert pooled[2] == pytest.approx((0 + 1 + 4 + 5) / 4)


def test_salient_index_follows_a_planted_peak():
    g = torch.Generator().manual_seed(0)
    attn = torch.rand(2, 14, 14, generator=g) * 0.01
    attn[0, 10, 2] = 1.0   # bottom-left
    attn[1, 1, 12] = 1.0   # top-right
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]])
    assert salient_index(attn, boxes.expand(2, 4, 4)).tolist() == [2, 1]


def test_vit_cls_attention_is_the_explicit_softmax():
    torch.manual_seed(0)
    net = build_model(presets.get("tiny").config, pretrained="none").eval()
    vit = net.encoder.vit
    x = torch.randn(2, 3, 96, 96)
    a = vit_cls_attention(vit, x)
    assert a.shape == (2, 36)
    # reference: run the blocks by hand, materialise the attention of the last block
    with torch.no_grad():
        h = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        for blk in vit.blocks[:-1]:
            h = blk(h)
        y = vit.blocks[-1].norm1(h)
        att = vit.blocks[-1].attn
        B, T, C = y.shape
        qkv = att.qkv(y).reshape(B, T, 3, att.num_heads, C // att.num_heads).permute(2, 0, 3, 1, 4)
        probs = torch.softmax(qkv[0] @ qkv[1].transpose(-2, -1) * att.scale, dim=-1)
    torch.testing.assert_close(a, probs[:, :, 0, 1:].mean(1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.sum(-1) + probs[:, :, 0, 0].mean(1), torch.ones(2), atol=1e-6, rtol=0)


def test_decoder_saliency_picks_the_crop_under_the_attention():
    torch.manual_seed(0)
    student = LMLModel(build_model(presets.get("tiny").config, pretrained="none"))
    teacher = EMATeacher(student, 0.9)
    whole = torch.rand(2, 3, 96, 96) * 255
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]]).expand(2, 3, 4)
    idx = teacher.salient(whole, boxes, "decoder")
    attn = teacher.module.net.forward_all(whole, need_attn=True).attn.mean(1).reshape(2, 6, 6)
    assert idx.tolist() == box_pool(attn, boxes).argmax(1).tolist()


def test_ema_update_is_exact():
    torch.manual_seed(0)
    student = LMLModel(build_model(presets.get("tiny").config, pretrained="none"))
    teacher = EMATeacher(student, momentum=0.75)
    for p, t in zip(student.parameters(), teacher.module.parameters()):
        assert torch.equal(p, t) and not t.requires_grad
    before = [t.clone() for t in teacher.module.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    teacher.update(student)
    for t0, t1, s in zip(before, teacher.module.parameters(), student.parameters()):
        expected = t0.clone().mul_(0.75).add_(s, alpha=0.25)
        assert torch.equal(t1, expected)
        torch.testing.assert_close(t1, 0.75 * t0 + 0.25 * s)


def test_deiqt_step_schedule_keeps_its_quirk():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    cfg = TrainConfig(schedule="deiqt-step", warmup_epochs=3, decay_epochs=3, lr=2e-4, warmup_lr=2e-7)
    sched = make_scheduler(opt, cfg, steps_per_epoch=10, total_steps=90)
    lrs = {}
    for t in range(0, 91):
        sched.step_update(t)
        lrs[t] = opt.param_groups[0]["lr"]
    assert lrs[0] == pytest.approx(2e-7)
    assert lrs[29] == pytest.approx(2e-7 + 29 * (2e-4 - 2e-7) / 30)   # approaching 2e-4 ...
    assert lrs[30] == pytest.approx(2e-5)                              # ... then 2e-5 at once
    assert lrs[59] == pytest.approx(2e-5) and lrs[60] == pytest.approx(2e-6) and lrs[89] == pytest.approx(2e-6)


def test_cosine_schedule_and_param_groups():
    student = LMLModel(build_model(presets.get("tiny").config, pretrained="none"))
    cfg = TrainConfig(schedule="cosine", warmup_epochs=1, lr=1e-3, min_lr=1e-6, weight_decay=0.05,
                      backbone_lr_scale=0.1)
    groups = param_groups(student, cfg)
    by = {(g["weight_decay"], g["lr_scale"]): g["params"] for g in groups}
    names = {id(p): n for n, p in student.named_parameters()}
    decayed = {names[id(p)] for (wd, _), ps in by.items() if wd > 0 for p in ps}
    assert "net.panels" in decayed and "net.encoder.vit.blocks.0.attn.qkv.weight" in decayed
    assert not {"net.encoder.vit.pos_embed", "net.encoder.vit.cls_token", "net.head.weight"} - (
        set(names.values()) - decayed) - {"net.head.weight"}
    assert all(n.startswith("net.encoder.vit") for (_, s), ps in by.items() if s == 0.1 for n in
               (names[id(p)] for p in ps))
    opt = torch.optim.AdamW(groups, lr=1e-3)
    sched = make_scheduler(opt, cfg, steps_per_epoch=10, total_steps=50)
    sched.step_update(10)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * next(g["lr_scale"] for g in opt.param_groups))
    sched.step_update(30)  # half-way through the cosine: (lr + min_lr) / 2
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx((1e-3 + 1e-6) / 2 * g["lr_scale"], rel=1e-6)
    sched.step_update(50)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-6 * g["lr_scale"], rel=1e-6)


def test_config_layers_and_number_coercion(tmp_path):
    from lmliqa.train.config import parse_set, resolve_config

    f = tmp_path / "c.yaml"
    f.write_text("lr: 5e-4\nepochs: 2\ncrops_per_image: 6\n")
    cfg = resolve_config("tiny", str(f), epochs=4, **parse_set(["tau=0.2", "freeze=[encoder.vit.patch_embed]"]))
    assert cfg.lr == 5e-4 and cfg.epochs == 4.0 and cfg.crops_per_image == 6 and cfg.tau == 0.2
    assert cfg.freeze == ["encoder.vit.patch_embed"] and cfg.images_per_step == 6  # from configs/train/tiny.yaml
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_set(["temperature=0.1"])
    f.write_text("learning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown training options"):
        resolve_config("tiny", str(f))


def test_iqa_metrics_values():
    from scipy import stats

    from lmliqa.metrics import iqa_metrics

    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 100, 200)
    mos = 100 / (1 + np.exp(-(pred - 50) / 8)) + rng.normal(0, 2, 200)  # MOS saturates: a logistic relation
    m = iqa_metrics(pred, mos)
    assert m["srcc"] == pytest.approx(stats.spearmanr(pred, mos)[0])
    assert m["krcc"] == pytest.approx(stats.kendalltau(pred, mos)[0])
    assert m["plcc"] == pytest.approx(stats.pearsonr(pred, mos)[0])
    assert m["plcc_logistic"] > m["plcc"] + 0.02 and m["plcc_logistic"] > 0.97
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))
    few = iqa_metrics(np.array([1.0, 2.0, 4.0]), np.array([10.0, 30.0, 20.0]))
    assert few["plcc_logistic"] == few["plcc"] and few["srcc"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=">= 3 paired scores"):
        iqa_metrics([1.0, 2.0], [1.0, 2.0])

"""The documents of a release: MODEL_CARD.md (what the model is for, how accurate it is, with intervals, how
faithful and fast each artifact is, where it is weak) and report.md with its plots. Every number comes from the
release's own evidence (parity, quantization, bench) or from the cross-validation file it was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from .data import licence_of
from .fidelity import FLIP_MARGIN


def weaknesses(parity, spec: str) -> dict[str, Any]:
    """Measured weak spots of the torch reference on the evaluation photos: bias and error by MOS tercile, the
    SRCC within each distortion type (negative = it ranks that distortion backwards), the worst images, and the
    artifact that reorders the most image pairs."""
    from .data import open_dataset

    pred, mos = parity.torch_scores, parity.mos
    names = parity.images
    err = pred - mos
    edges = np.quantile(mos, [1 / 3, 2 / 3])
    terciles = []
    thirds = (("lowest third of MOS", mos <= edges[0]), ("middle third", (mos > edges[0]) & (mos <= edges[1])),
              ("highest third of MOS", mos > edges[1]))
    for label, keep in thirds:
        terciles.append({"range": label, "n": int(keep.sum()), "mos": [float(mos[keep].min()), float(mos[keep].max())],
                         "bias": float(err[keep].mean()), "mae": float(np.abs(err[keep]).mean())})
    by_distortion = []
    try:
        ds = open_dataset(spec)
        kind = {str(r.path): r.distortion for r in ds.records}
    except Exception:     # noqa: BLE001 - the per-distortion table is left out when the spec cannot be reopened
        kind = {}
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        if kind.get(n):
            groups.setdefault(kind[n], []).append(i)
    for d, idx in sorted(groups.items()):
        if len(idx) >= 5 and np.ptp(mos[idx]) > 0 and np.ptp(pred[idx]) > 0:
            by_distortion.append({"distortion": d, "n": len(idx),
                                  "srcc": float(stats.spearmanr(pred[idx], mos[idx])[0])})
    worst = [{"image": Path(names[i]).name, "mos": float(mos[i]), "score": float(pred[i])}
             for i in np.argsort(-np.abs(err))[:5]]
    flips = max(parity.rows, key=lambda r: r.fidelity.rank_flip_rate, default=None)
    return {"terciles": terciles, "by_distortion": by_distortion, "worst_images": worst,
            "most_reordering_artifact": flips and {"artifact": flips.artifact, "precision": flips.precision.value,
                                                  "rank_flip_rate": flips.fidelity.rank_flip_rate}}


def cv_headline(cv: dict[str, Any]) -> dict[str, Any]:
    """The card's summary of a cross-validation file (benchmarks/cv_accuracy.py)."""
    return {"file": cv.get("file"), "protocol": cv.get("protocol"), "data": cv.get("data"),
            "pooled": cv.get("pooled"), "folds": cv.get("folds"), "commit": cv.get("provenance", {}).get("commit"),
            "note": cv.get("note")}


def cross_dataset(tables: list[dict[str, Any]]) -> dict[str, Any]:
    """What the manifest keeps of cross-dataset tables over the same data sets (lmliqa.train.crosseval; merged, each
    row with the command that measured it), with the results published on each column's data set (its reader's
    registry entry) to stand beside it."""
    from .data.readers import ALIASES, READERS
    from .train.crosseval import merge

    table = merge(tables)

    published = {}
    for c in table["columns"]:
        reader = READERS.get(ALIASES.get(c["spec"].split(":", 1)[0], c["spec"].split(":", 1)[0]))
        if reader and reader.published:
            published[c["name"]] = [{"method": m, "srcc": sr, "plcc": pl, "source": src}
                                    for m, sr, pl, src in reader.published]
    runs = list({(r["provenance"]["command"], r["provenance"]["commit"]): None for r in table["rows"]})
    return {"columns": table["columns"], "rows": table["rows"], "published": published,
            "commit": ", ".join(str(c) for _, c in runs), "command": "; ".join(str(c) for c, _ in runs)}


def _cross_dataset(cross: dict[str, Any] | None) -> list[str]:
    if not cross:
        return []
    from .train.crosseval import markdown

    lines = ["## Across data sets", "", "Each model on each data set's evaluation photos (its published test split, "
             "else all of it), never on its own training photos (checked by content hash); SRCC / PLCC with 95 % "
             f"bootstrap intervals (`{cross.get('command')}`, commit {cross.get('commit')}):", "", markdown(cross)]
    for name, rows in cross["published"].items():
        lines += [f"Published on {name}'s test split, for comparison:", "", "| method | SRCC | PLCC |",
                  "|---|---|---|"]
        lines += [f"| {r['method']} | {r['srcc']:.4f} | {r['plcc']:.4f} |" for r in rows]
        lines += ["", f"(Source: {rows[0]['source']}.)", ""]
    return lines


def _ci(m: dict[str, float], digits: int = 3) -> str:
    return f"{m['value']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def _speed(bench: dict[str, Any], artifact: str, precision: str, batch: int = 1) -> float | None:
    for r in bench["rows"]:
        if r["artifact"] == artifact and r["precision"] == precision and r["batch"] == batch:
            return r["median_ms"] / batch
    return None


def _metrics_table(ci: dict[str, Any]) -> list[str]:
    return ["| SRCC | PLCC | KRCC | RMSE |", "|---|---|---|---|",
            f"| {_ci(ci['srcc'])} | {_ci(ci['plcc'])} | {_ci(ci['krcc'])} | {_ci(ci['rmse'], 2)} |", ""]


def _intro(body: dict[str, Any]) -> list[str]:
    lines = [f"# Model card: {body['name']}", ""]
    if body["data"]["allow_overlap"]:
        lines += ["**WARNING: this release was evaluated with --allow-overlap: the evaluation photos were not checked "
                  "against the training photos and may include them, so its accuracy numbers may be flattering.**", ""]
    scale = body["score"].get("name", "MOS") if body.get("score") else "MOS"
    return lines + [
        f"LML-IQA `{body['model']}` ({body['backbone']} encoder + DEIQT decoder): one no-reference quality score per "
        f"photo on the {scale} scale of its training data (higher is better), the mean of the contract's crop scores.",
        "",
        "## Intended use",
        "- Ranking and screening photos by perceived technical quality (blur, noise, exposure, compression) on "
        "devices: camera-capture checks, culling, monitoring a pipeline for regressions.",
        "- A starting point to fine-tune on your own photos and opinions, not a universal judge of quality.",
        "",
        "## Not for",
        "- Aesthetic or semantic judgements (composition, content, who or what is in the photo), or decisions about "
        "people.",
        "- Images unlike the training data (screenshots, documents, medical or satellite imagery, heavy synthetic "
        "distortions) without validating on them first.",
        "- Absolute thresholds copied from another data set: the score is on its training data's MOS scale.",
        "",
    ]


def _training(body: dict[str, Any]) -> list[str]:
    from . import presets

    t = body["data"]["training"]
    try:
        weights = presets.get_backbone(body["backbone"]).weights_licence
    except presets.PresetError:
        weights = "not recorded (backbone not in lmliqa's model registry)"
    return ["## Training data",
            f"- {t['spec']} (split `{t['split']}`" + (f", {t['n_images']} photos" if t["n_images"] else "") + ")",
            f"- Licence: {licence_of(t['spec'])}",
            f"- Backbone weights ({body['backbone']}): {weights}",
            f"- Checkpoint sha256 `{body['checkpoint']['sha256']}`", ""]


def with_training(card: str, body: dict[str, Any]) -> str:
    """CARD (a MODEL_CARD.md) with its "Training data" section written again from BODY (release.amend_training)."""
    head = "## Training data\n"
    start = card.index(head)
    end = card.index("\n## ", start + len(head)) + 1         # the next section's heading
    return card[:start] + "\n".join(_training(body)) + "\n" + card[end:]


def _accuracy(body: dict[str, Any]) -> list[str]:
    acc, data = body["accuracy"], body["data"]
    lines = ["## Accuracy"]
    cv = body.get("cross_validation")
    if cv and cv.get("pooled"):
        lines += [f"Cross-validated ({cv['protocol']}, {cv['data']}; out-of-fold predictions pooled, 95 % bootstrap "
                  f"intervals; `{cv.get('file')}`, commit {cv.get('commit')}):", "", *_metrics_table(cv["pooled"])]
        if cv.get("folds"):
            lines += ["Per fold SRCC: " + ", ".join(f"{f['srcc']:.3f}" for f in cv["folds"]), ""]
        if cv.get("note"):
            lines += [cv["note"], ""]
    which = data["evaluation"].get("photos")
    lines += [f"On the release's evaluation photos (`{data['evaluation']['spec']}`"
              + (f", {which}" if which and which != "all photos" else "") + f", {acc['n']} photos, "
              + ("**which may include training photos**" if data["allow_overlap"] else "none of them training or "
                 "calibration photos (checked by content hash)") + "), torch FP32, 95 % bootstrap intervals:", "",
              *_metrics_table(acc["ci95"])]
    if data["evaluation"]["spec"].startswith("synthetic"):
        lines += ["The synthetic set's \"MOS\" is 100 x SSIM against the undistorted photo, not human opinion: the "
                  "numbers above measure agreement with a full-reference metric, not with people.", ""]
    return lines


def _vs_mos(f) -> str:
    """An artifact's own agreement with people on the evaluation photos ('-' when they carry no MOS)."""
    return "-" if f.srcc_vs_mos is None else f"{f.srcc_vs_mos:.3f} / {f.plcc_vs_mos:.3f}"


def _artifacts(body: dict[str, Any], parity, bench: dict[str, Any]) -> list[str]:
    lines = ["## Artifacts (fidelity to torch FP32 on the evaluation photos, speed on "
             f"{bench['cpu']}, {bench['threads']} threads)", "",
             "| artifact | target | platform | executed as | photos | size MB | max abs d | mean abs d | "
             f"SRCC vs torch | rank flips (all / pairs > {FLIP_MARGIN:g} apart) | SRCC / PLCC vs MOS | "
             "ms / photo (batch 1) | gate | shipped |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    shipped = set(body["artifacts"])
    for r in parity.rows:
        f = r.fidelity
        ms = _speed(bench, r.artifact, r.precision.value) if r.platform == "native" else None
        lines.append(f"| {r.artifact} | {r.target} | {r.platform} | {r.precision} | {f.n} | "
                     f"{r.details['size_mb']:.1f} | {f.max_abs:.3g} | {f.mean_abs:.3g} | {f.srcc_vs_ref:.4f} | "
                     f"{f.rank_flip_rate:.2%} / {f.material_flip_rate:.2%} | {_vs_mos(f)} | "
                     f"{'-' if ms is None else f'{ms:.1f}'} | {'pass' if r.gate_pass else 'FAIL'} ({r.gate}) | "
                     f"{'yes' if r.artifact in shipped else 'no'} |")
    torch_ms = _speed(bench, Path(body["checkpoint"]["source"]).name, "fp32")
    if torch_ms:
        lines.append(f"\nTorch eager FP32 (the reference): {torch_ms:.1f} ms / photo at batch 1, same run.")
    withdrawn = [(name, p, why) for name, a in body["artifacts"].items() for p, why in a.get("withdrawn", {}).items()]
    if withdrawn:
        lines += ["", "Not offered (the release refuses to load them in this precision):", ""]
        lines += [f"- {name} in {p}: {why}" for name, p, why in withdrawn]
    nv = body["not_verified_here"]
    if nv:
        lines += ["", "Not verified on the machine that built this release:", ""]
        lines += [f"- {c['artifact']} ({c['precision']}): {c['status']}" for c in nv]
    return lines + [""]


def _weaknesses(weak: dict[str, Any]) -> list[str]:
    lines = ["## Known weaknesses (measured on the evaluation photos)", "",
             "| MOS range | photos | bias (score - MOS) | mean abs error |", "|---|---|---|---|"]
    for t in weak["terciles"]:
        lines.append(f"| {t['range']} ({t['mos'][0]:.0f}-{t['mos'][1]:.0f}) | {t['n']} | {t['bias']:+.2f} | "
                     f"{t['mae']:.2f} |")
    worst_t = max(weak["terciles"], key=lambda t: t["mae"])
    lines += ["", f"The largest errors are in the {worst_t['range']}: scores there are off by {worst_t['mae']:.1f} "
                  f"MOS points on average (bias {worst_t['bias']:+.1f}; a positive bias over-rates poor photos, "
                  "a negative one under-rates good ones)."]
    if weak["by_distortion"]:
        lines += ["", "| distortion | photos | SRCC within it |", "|---|---|---|"]
        lines += [f"| {d['distortion']} | {d['n']} | {d['srcc']:.3f}{' (ranked backwards)' if d['srcc'] < 0 else ''} |"
                  for d in weak["by_distortion"]]
    lines += ["", "Worst photos: " + ", ".join(f"{w['image']} (MOS {w['mos']:.0f}, scored {w['score']:.0f})"
                                               for w in weak["worst_images"])]
    if weak["most_reordering_artifact"]:
        m = weak["most_reordering_artifact"]
        lines += ["", f"Of the artifacts, {m['artifact']} ({m['precision']}) reorders the most photo pairs against "
                      f"torch: {m['rank_flip_rate']:.2%}."]
    return lines + [""]


CITATION = [
    "```bibtex",
    "@article{lmliqa2024, title={Contrastive Local Manifold Learning for No-Reference Image Quality Assessment}, "
    "journal={arXiv:2406.19247}, year={2024}}",
    "@inproceedings{qin2023deiqt, title={Data-Efficient Image Quality Assessment with Attention-Panel Decoder}, "
    "author={Qin, Guanyi and Hu, Runze and Liu, Yutao and Zheng, Xiawu and Liu, Haotian and Li, Xiu and Zhang, Yan}, "
    "booktitle={AAAI}, year={2023}}",
    "@article{ghadiyaram2016livec, title={Massive Online Crowdsourced Study of Subjective and Objective Picture "
    "Quality}, author={Ghadiyaram, Deepti and Bovik, Alan C.}, journal={IEEE TIP}, year={2016}}",
    "```",
]


def _closing(body: dict[str, Any]) -> list[str]:
    p = body["provenance"]
    return ["## How to check a port", "",
            "`golden/` holds probe photos with the reference score of each photo and each crop and every "
            "artifact's tolerance (`golden/golden.json`): run them through your app and compare. `lmliqa verify "
            "DIR` re-hashes every file against `manifest.json` and scores the probes on every target that runs.",
            "", "## Citation", "", *CITATION, "",
            f"Built by lmliqa {p['lmliqa']} at commit {p['commit']} on {p['machine']['cpu']} ({body['created']}): "
            f"`{p['command']}`."]


def model_card(body: dict[str, Any], parity, bench: dict[str, Any]) -> str:
    """MODEL_CARD.md from the manifest body, the parity report (lmliqa.parity.ParityReport) and the bench report."""
    lines = (_intro(body) + _training(body) + _accuracy(body) + _cross_dataset(body.get("cross_dataset"))
             + _artifacts(body, parity, bench)
             + _weaknesses(body["weaknesses"]) + _closing(body))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------- report.md
def _scatter(path: Path, parity) -> None:
    import matplotlib.pyplot as plt

    rows, ref = parity.rows, parity.torch_scores
    cols = min(4, max(1, len(rows)))
    nrows = max(1, -(-len(rows) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.2 * nrows), squeeze=False)
    lo, hi = float(ref.min()), float(ref.max())
    for ax, r in zip(axes.flat, rows):
        got = np.asarray(r.details["scores"])          # an emulated platform's row covers the first photos only
        ax.scatter(ref[:len(got)], got, s=5)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
        ax.set_title(f"{r.artifact}\n{_label(r)}: max |d| {r.fidelity.max_abs:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.supxlabel("torch FP32 score")
    fig.supylabel("artifact score")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _label(r) -> str:
    return f"{r.precision}" + ("" if r.platform == "native" else f" on {r.platform}")


def _abs_diff(path: Path, parity) -> None:
    import matplotlib.pyplot as plt

    rows, ref = parity.rows, parity.torch_scores
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    d = [np.maximum(np.abs(np.asarray(r.details["scores"]) - ref[:len(r.details["scores"])]), 1e-7) for r in rows]
    ax.boxplot(d, orientation="horizontal", tick_labels=[f"{r.artifact} {_label(r)}" for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("|score - torch FP32| per photo (MOS units, log)")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _speed_vs_fidelity(path: Path, body: dict[str, Any], parity, bench: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for r in parity.rows:
        ms = _speed(bench, r.artifact, r.precision.value) if r.platform == "native" else None
        if ms is None:
            continue
        ax.scatter(ms, max(r.fidelity.mean_abs, 1e-6))
        ax.annotate(f"{r.target} {r.precision}", (ms, max(r.fidelity.mean_abs, 1e-6)), fontsize=7)
    torch_ms = _speed(bench, Path(body["checkpoint"]["source"]).name, "fp32")
    if torch_ms:
        ax.axvline(torch_ms, color="k", ls="--", lw=0.8, label=f"torch eager FP32 ({torch_ms:.0f} ms)")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"ms per photo, batch 1 ({bench['cpu']}, {bench['threads']} threads)")
    ax.set_ylabel("mean |score - torch FP32| (MOS units)")
    ax.set_title("speed against fidelity, every target x precision", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _validation(body: dict[str, Any]) -> str:
    """The quantizers' validation photos (the float-scope ladder's gate), for manifests that record them."""
    val = body["data"].get("validation")
    return f"; quantizers validated on `{val['spec']}`, {val['n_images']} other photos" if val else ""


def write_report(out: Path, body: dict[str, Any], parity, bench: dict[str, Any], quant) -> Path:
    """report.md and its plots: every row's scores against torch, the |d| distributions, speed against fidelity."""
    import matplotlib

    matplotlib.use("Agg")
    from .bench import format_table

    figs = out / "report"
    figs.mkdir(exist_ok=True)
    _scatter(figs / "scatter.png", parity)
    _abs_diff(figs / "abs_diff.png", parity)
    _speed_vs_fidelity(figs / "speed_vs_fidelity.png", body, parity, bench)
    lines = [f"# Release report: {body['name']}", ""]
    if body["data"]["allow_overlap"]:
        lines += ["**Evaluated with --allow-overlap: the evaluation photos may include training photos.**", ""]
    lines += [f"Evaluation: `{body['data']['evaluation']['spec']}`, {parity.n_images} photos; calibration: "
              f"`{body['data']['calibration']['spec']}`, {body['data']['calibration']['n_images']} photos"
              f"{_validation(body)}; quantized "
              f"with float scope `{quant.scope}`{_widened(quant)}.", "",
              "## Scores against torch FP32", "", "![scatter](report/scatter.png)", "",
              "## |d| per photo", "", "![abs diff](report/abs_diff.png)", "",
              "## Speed against fidelity", "", "![speed vs fidelity](report/speed_vs_fidelity.png)", "",
              "## Parity", "", (out / "evidence" / "parity" / "parity.md").read_text(), "",
              "## Speed", "", format_table(bench)]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


WIDENED = " (widened: the narrower scope's artifact failed its gate or held it only at its edge)"


def _widened(quant) -> str:
    """'; `S` for T ...' for each target whose artifact was made with another scope than the report's: a narrower
    one tried first (quantize/onnx.py NARROW_FIRST) or a wider one after a failed gate."""
    default = list(quant.scope.categories)
    parts = sorted({f"`{','.join(r.details['scope']) or 'none'}` for {r.target}"
                    + (WIDENED if r.details.get("scope_widened") else "")
                    for r in quant.results if "scope" in r.details and r.details["scope"] != default})
    return f"; {'; '.join(parts)}" if parts else ""

"""What `lmliqa info` reports: version, presets with their cost, the registered targets and what this machine can do."""

from __future__ import annotations

import platform
from typing import Any

from . import __version__, default_model, platforms, presets, targets
from ._quiet import quiet_imports
from .targets import Stage


def target_status() -> list[dict[str, Any]]:
    """Each registered target (and the torch reference): its runtime's packages, their versions, whether the
    runtime imports here, and which stages are installed."""
    rows = []
    installed = targets.tool_versions()
    for t in targets.targets(reference=True):
        stages = {s.value: not t.missing(s) for s in (Stage.EXPORT, Stage.QUANTIZE, Stage.RUNTIME)
                  if (s is Stage.RUNTIME) or (t.export_module if s is Stage.EXPORT else t.quantize_module)}
        versions = {d: installed[d] for d in t.tools if d in installed}
        rows.append({"target": t.name, "runtime": t.title, "devices": t.devices,
                     "precisions": [p.value for p in t.precisions], "stages": stages, "versions": versions,
                     "reference": t.reference})
    return rows


def capability_matrix() -> list[dict[str, str]]:
    """Every target x precision with what this machine can do with it (lmliqa.targets.Support):

    - ``runs here``: `lmliqa parity` can execute and measure it (and then reports it ``verified``);
    - ``simulated``: checked without native execution (Core ML off macOS: package inspection and a weights
      round trip);
    - ``exported, not verified``: the artifact can be written here but not run;
    - ``unsupported``: this machine cannot produce or run that precision.
    """
    with quiet_imports():
        caps = [c for t in targets.targets(reference=True) for c in t.probe()]
    return [{"target": c.target, "precision": c.precision.value, "support": c.support.value, "note": c.note,
             "status": str(c)} for c in caps]


def platform_status() -> list[dict[str, Any]]:
    """Each platform: whether it runs here (and why not), the targets it covers and those it does not, with why."""
    rows = []
    for p in platforms.platforms():
        why = p.unavailable()
        covered = [t.name for t in targets.targets() if p.covers(t.name)]
        rows.append({"platform": p.name, "title": p.title, "arch": p.arch, "available": not why, "why_not": why,
                     "targets": covered, "not_covered": {t.name: p.why_not(t.name) for t in targets.targets()
                                                         if not p.covers(t.name)},
                     "emulated": not p.native, "devices": p.devices})
    return rows


def _preset_facts(p: presets.Preset) -> dict[str, Any]:
    """What the model registry says of a preset (no torch needed)."""
    b = p.backbone
    return {"preset": p.name, "backbone": b.name, "pretrained": p.config.pretrained,
            "weights_licence": b.weights_licence,
            "recipe": p.recipe, "float_scope": list(b.float_scope), "wider_scope": list(b.wider_scope),
            "regions": sorted(b.network_regions), "crop_size": p.config.contract.crop_size,
            "eval_crops": p.config.contract.n_eval_crops, "description": p.description}


def preset_rows() -> list[dict[str, Any]]:
    try:
        import torch

        from .models.network import build_model, count_parameters, gmacs_per_crop
    except ImportError as exc:
        reason = f"torch not installed ({exc}); pip install 'lmliqa[train]'"
        return [{**_preset_facts(p), "params": None, "gmac_per_crop": None, "note": reason}
                for p in presets.presets()]
    rows = []
    for p in presets.presets():
        with torch.device("meta"):
            params = count_parameters(build_model(p.config, pretrained="none"))
        rows.append({**_preset_facts(p), "params": params, "gmac_per_crop": round(gmacs_per_crop(p.config), 4)})
    return rows


def gather() -> dict[str, Any]:
    return {
        "lmliqa": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "presets": preset_rows(),
        "targets": target_status(),
        "capabilities": capability_matrix(),
        "platforms": platform_status(),
        "default_model": default_model.summary(),
    }


def format_info(info: dict[str, Any]) -> str:
    lines = [f"lmliqa {info['lmliqa']}  (Python {info['python']}, {info['platform']})", "", "presets:"]
    for p in info["presets"]:
        if p["params"] is None:
            lines.append(f"  {p['preset']:<13} {p['backbone']:<26} {p['note']}")
            continue
        lines.append(f"  {p['preset']:<13} {p['backbone']:<26} {p['params'] / 1e6:6.2f}M params  "
                     f"{p['gmac_per_crop']:6.3f} GMAC/crop  {p['crop_size']}px x {p['eval_crops']} crops  "
                     f"weights: {p['pretrained']}")
    lines += ["", "targets (stages installed here; tool versions):"]
    for t in info["targets"]:
        stages = " ".join(f"{k}:{'yes' if v else 'no'}" for k, v in t["stages"].items())
        versions = ", ".join(f"{k} {v}" for k, v in t["versions"].items()) or "-"
        lines.append(f"  {t['target']:<11} {t['runtime']:<20} {stages:<36} {versions}")
    lines += ["", "capabilities (target x precision on this machine; `lmliqa parity` measures what runs here):"]
    for c in info["capabilities"]:
        lines.append(f"  {c['target']:<11} {c['precision']:<10} {c['status']}")
    lines += ["", "platforms (where an artifact's network executes: --platform on score, parity, verify, release):"]
    for p in info.get("platforms", []):
        state = "available" if p["available"] else f"not available: {p['why_not']}"
        lines.append(f"  {p['platform']:<8} {p['title']}: {state}")
        if p["emulated"]:
            lines.append(f"           runs {', '.join(p['targets'])}; not: " + "; ".join(
                f"{t} ({why})" for t, why in p["not_covered"].items()))
    lines += ["", "default model (`lmliqa score PHOTOS` without --model; `lmliqa.runtimes.load()`):"]
    d = info.get("default_model")
    if d is None:
        lines.append("  not bundled in this install (benchmarks/make_default_model.py builds it)")
        return "\n".join(lines)
    lines.append(f"  {d['name']}: " + ", ".join(f"{n} ({w})" for n, w in d["artifacts"].items()))
    ms = d.get("measured_ms", {})
    lines.append("  used in this order (the first whose runtime is installed; the release's batch-1 ms per photo): "
                 + ", ".join(f"{n}" + (f" {ms[n]:.1f} ms" if n in ms else " untimed") for n in d.get("order", [])))
    for n in d.get("not_installed", []):
        lines.append(f"  {n}: not in this install (the wheel leaves the torch checkpoint out to stay within 15 MB); "
                     "`lmliqa info --fetch-checkpoint FILE|URL` adds it")
    t = d["trained_on"]
    lines.append(f"  trained on {t['spec']} (split {t['split']}, {t['n_images']} photos); built at commit "
                 f"{d['commit']} on {d['created']}")
    acc = d.get("accuracy")
    if acc:
        s, p = acc["srcc"], acc["plcc"]
        lines.append(f"  torch reference on {acc['data']} ({acc['n']} evaluation photos, none trained on): SRCC "
                     f"{s['value']:.3f} [{s['low']:.3f}, {s['high']:.3f}], PLCC {p['value']:.3f} [{p['low']:.3f}, "
                     f"{p['high']:.3f}] (95 % bootstrap)")
    cv = d.get("cross_validation")
    if cv and cv.get("srcc"):
        s, p = cv["srcc"], cv["plcc"]
        lines.append(f"  accuracy ({cv['protocol']}): SRCC {s['value']:.3f} [{s['low']:.3f}, {s['high']:.3f}], "
                     f"PLCC {p['value']:.3f} [{p['low']:.3f}, {p['high']:.3f}] (95 % bootstrap)")
    lines.append(f"  model card: {d['card']}")
    return "\n".join(lines)

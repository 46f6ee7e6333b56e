"""The tables `lmliqa bench` prints (markdown), one per mode, from its JSON reports."""

from __future__ import annotations

from typing import Any


def format_table(report: dict[str, Any]) -> str:
    lines = [f"lmliqa bench: {report['cpu']}, {report['threads']} threads, batch = images "
             "(x the contract's crops each)", "",
             "| artifact | backend | precision | batch | images/s | median ms | p95 ms | x torch fp32 | size MB | "
             "peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        sp = r["speedup_vs_torch_fp32"]
        ratio = f"{sp:.2f}" if sp else "-"
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {r['batch']} | "
                     f"{r['images_per_s']:.2f} | {r['median_ms']:.1f} | {r['p95_ms']:.1f} | {ratio} | "
                     f"{r['model_size_mb']:.1f} | {r['peak_rss_mib']:.0f} |")
    for s in report["skipped"]:
        lines.append(f"| {s['artifact']} | {s['backend']} | {s['precision'] or 'stored'} | - | not run: {s['reason']} |"
                     " | | | | |")
    return "\n".join(lines) + "\n"


def format_camera(report: dict[str, Any]) -> str:
    f = report["frame"]
    lines = [f"lmliqa bench --camera: {report['cpu']}, {report['threads']} threads; a {f['width']}x{f['height']} "
             f"JPEG (q{f['jpeg_quality']}, {f['jpeg_bytes']} bytes) -> score, batch 1", "",
             "| artifact | runs as | precision | p50 ms | p95 ms | decode | crops | network | aggregate | "
             "x eager | x best torch | GMAC/s | of peak |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        st = r["stages_p50_ms"]
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                     f"{st['decode']:.2f} | {st['crops']:.2f} | {st['network']:.1f} | {st['aggregate']:.3f} | "
                     f"{r['speedup_vs_torch_eager'] or 0:.2f} | {r['speedup_vs_best_torch'] or 0:.2f} | "
                     f"{r['network_gmacs_per_s']:.1f} | "
                     + (f"{r['utilisation']:.1%}" if r["utilisation"] is not None else "-") + " |")
    for s in report["skipped"]:
        lines.append(f"| {s['artifact']} | {s['backend']} | {s['precision'] or 'stored'} | not run: {s['reason']} |"
                     " | | | | | | |")
    return "\n".join(lines) + "\n"


def format_folder(report: dict[str, Any]) -> str:
    lines = [f"lmliqa bench --folder: {report['n_images']} photos of {report['folder']}, batch {report['batch']}, "
             f"{report['threads']} threads, decode workers {report['workers'] or 'default'}", "",
             "| artifact | backend | precision | end to end img/s | network ceiling img/s | fraction |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['precision']} | {r['end_to_end_images_per_s']:.2f} | "
                     f"{r['network_ceiling_images_per_s']:.2f} | {r['fraction_of_ceiling']:.0%} |")
    for s in report["skipped"]:
        lines.append(f"| {s['artifact']} | {s['backend']} | {s['precision'] or 'stored'} | not run: {s['reason']} | |"
                     " |")
    return "\n".join(lines) + "\n"



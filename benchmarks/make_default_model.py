"""Build the default model that ships in the package (lmliqa/default_model/release).

    lmliqa train --preset mobile --data folder:../shared/data/livec-dev --split all --out runs/default
    python benchmarks/make_default_model.py --checkpoint runs/default/final.safetensors --cv CV.json

    # the same network released again (e.g. with quantization-aware INT8 files): its fp16-stored weights are kept
    python benchmarks/make_default_model.py --checkpoint default --qat-steps 400 ...

    # build nothing: the shipped release's training-data record written again by this version's rules
    python benchmarks/make_default_model.py --amend-training --results benchmarks/results/DATE-default-model.json

1. stores the trained weights as fp16 (half the bytes; the network computes in fp32 from them) with the content
   hashes of its training photos, so any machine can check evaluation photos against them without the data;
2. runs `lmliqa release` on it: ships the INT8 ONNX and the INT8 LiteRT model (torch-free scoring: each runtime's
   fastest gated artifact, by the release's own timing) and the fp16-stored checkpoint (the torch reference),
   calibrated on the training photos and evaluated on --eval (a data set's published test split, or the embedded
   synthetic set), never on a training photo;
3. checks the wheel budget: the release folder less what the wheel leaves out (the checkpoint:
   lmliqa.default_model.WHEEL_EXCLUDES), deflated as a wheel stores it, must stay under 15 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

BUDGET_MB = 15.0
OUT = Path(__file__).resolve().parents[1] / "lmliqa" / "default_model" / "release"


def fp16_checkpoint(src: Path, dst: Path) -> Path:
    """SRC's weights stored as fp16, its metadata kept, plus the training photos' sha256 and the source's sha256."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from lmliqa.data import training_photos
    from lmliqa.manifest import sha256_file
    from lmliqa.models.checkpoint import META_KEY

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    extra = meta["extra"]
    _, photos = training_photos(meta)          # its own training photos and those of the model it started from
    extra["train_images_sha256"] = sorted(photos)       # 16-digit keys (lmliqa.data.PhotoSet)
    extra["train_images_complete"] = True
    extra["weights_stored"] = {"dtype": "fp16", "rounded_from_sha256": sha256_file(src)}
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(src)).items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dst), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return dst


def stored_checkpoint(src: Path, name: str, work: Path) -> Path:
    """The checkpoint the release ships: SRC stored as fp16 next to it, or, when SRC is already a released
    (fp16-stored) checkpoint such as the package's own, a copy of it in WORK (the release folder is rebuilt)."""
    from lmliqa.models.checkpoint import read_metadata

    if "weights_stored" not in read_metadata(src)["extra"]:
        return fp16_checkpoint(src, src.with_name(f"{name}.safetensors"))
    work.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(src, work / f"{name}.safetensors"))


def wheel_mb(folder: Path) -> float:
    """FOLDER's deflated size as the wheel stores it: its files less WHEEL_EXCLUDES."""
    from lmliqa.default_model import left_out_of_wheel

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            if p.is_file() and not left_out_of_wheel(rel):
                z.write(p, rel)
    return len(buf.getvalue()) / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint",
                    help="the FP32 checkpoint trained on every dev photo, or a released fp16-stored one ('default': "
                         "the package's own, to release the same network again)")
    ap.add_argument("--calib", default="folder:../shared/data/livec-dev")
    ap.add_argument("--eval", default="synthetic")
    ap.add_argument("--cv", help="the recipe's cross-validation result (benchmarks/cv_accuracy.py)")
    ap.add_argument("--cross", action="append", default=[],
                    help="a cross-dataset table (lmliqa eval --cross --out) for the card (repeat: merged)")
    ap.add_argument("--name", default="lmliqa-default-mobile")
    ap.add_argument("--keep", default="onnx:int8,litert:int8", help="what ships beside the checkpoint")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--qat-steps", type=int, help="quantization-aware fine-tuning of the INT8 graphs that have it "
                                                   "(lmliqa release --qat-steps)")
    ap.add_argument("--qat-device", help="lmliqa release --qat-device (default auto: CUDA when visible)")
    ap.add_argument("--val", help="lmliqa release --val: the quantizers' validation photos (default: other photos of "
                                  "--calib; photos the checkpoint never trained on are the better choice)")
    ap.add_argument("--float-scope", help="lmliqa release --float-scope (default: each target's ladder)")
    ap.add_argument("--work", default="runs/default-model", help="where a released checkpoint is copied to")
    ap.add_argument("--results", help="also write the record for benchmarks/results here")
    ap.add_argument("--amend-training", action="store_true",
                    help="build nothing: write the training-data record of the release in --out again from its "
                         "checkpoint (lmliqa.release.amend_training; the manifest keeps what it said before)")
    args = ap.parse_args(argv)
    if not (args.checkpoint or args.amend_training):
        ap.error("--checkpoint is required (or --amend-training)")
    from lmliqa.provenance import git_commit

    if str(git_commit()).endswith("+dirty"):       # the card names the commit the model was built from
        print("make_default_model: commit or stash your changes first (the release records a clean commit)",
              file=sys.stderr)
        return 2

    if args.amend_training:
        return amend(Path(args.out), args.results and Path(args.results))

    from lmliqa.cli._common import checkpoint_path

    src = Path(checkpoint_path(args.checkpoint))
    half = stored_checkpoint(src, args.name, Path(args.work))
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "lmliqa", "release", "--checkpoint", str(half), "--calib", args.calib,
           "--eval", args.eval, "--targets", ",".join(dict.fromkeys(k.split(":")[0] for k in args.keep.split(","))),
           "--keep", args.keep, "--include-checkpoint",
           "--name", args.name, "--out", str(out)] + (["--cv", args.cv] if args.cv else []) + [
               a for c in args.cross for a in ("--cross", c)] + (
               ["--qat-steps", str(args.qat_steps)] if args.qat_steps else []) + (
               ["--float-scope", args.float_scope] if args.float_scope else []) + [
               a for flag, v in (("--qat-device", args.qat_device), ("--val", args.val)) if v for a in (flag, v)]
    print(" ".join(cmd), file=sys.stderr)
    rc = subprocess.run(cmd).returncode
    if rc:
        return rc
    size = wheel_mb(out)
    print(f"{out}: {size:.2f} MB deflated (budget {BUDGET_MB} MB)", file=sys.stderr)
    if args.results:
        write_results(Path(args.results), out, half, size)
    return 0 if size <= BUDGET_MB else 1


def amend(release: Path, results: Path | None) -> int:
    """--amend-training: RELEASE's training record written again (and its RESULTS record, when given)."""
    from lmliqa.release import amend_training

    body = amend_training(release)
    print(f"{release}: " + (f"training record now {body['data']['training']['spec']}" if body else
                            "nothing to amend"), file=sys.stderr)
    if body and results:
        write_results(results, release, release / body["checkpoint"]["file"], wheel_mb(release))
    return 0


def train_command(train: dict) -> str:
    """The `lmliqa train` command line of a checkpoint's recorded training config (the options that set it apart)."""
    cmd = f"lmliqa train --preset {train['preset']} --data {train['data']} --split {train['split']}"
    if train.get("data_weights"):
        cmd += " --data-weights " + ",".join(f"{w:g}" for w in train["data_weights"])
    cmd += f" --epochs {train['epochs']:g} --out {train['out']}"
    sets = {k: train[k] for k in ("init_from", "cache_images") if train.get(k) not in (None, True)}
    return cmd + "".join(f" --set {k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sets.items())


def qat_command(qat: dict) -> str:
    """The `lmliqa train --qat-from` command line of a QAT checkpoint's recorded fine-tuning (quantize/_qat.py)."""
    cmd = (f"lmliqa train --qat-from {qat['source_checkpoint']} --data {qat['photos_spec']} --max-steps {qat['steps']} "
           f"--set lr={qat['lr']:g} --set float_weight={qat['float_weight']:g} --set seed={qat['seed']}")
    val = qat["validation"]
    return cmd + (f" --qat-val {val['spec']}" if val["spec"] != qat["photos_spec"] else "") + \
        f" --qat-val-images {val['n_images']}"


def training_record(extra: dict) -> dict:
    """How the released checkpoint (metadata EXTRA) was trained: its command, the checkpoint it started from, its
    data and numbers; a QAT checkpoint (which="qat") names its fine-tuning and the training of its source."""
    common = {"checkpoint_sha256": extra["weights_stored"]["rounded_from_sha256"],   # the trained fp32 file's
              "data": extra["dataset"]}
    start = extra.get("init_from")
    if extra.get("which") == "qat":
        qat = extra["qat"]
        return {"command": qat_command(qat), **common,
                "started_from": {k: v for k, v in start.items() if k not in ("train_images_sha256", "train_config")},
                "source_training_command": train_command(start["train_config"]),
                "summary": {"qat": {k: qat[k] for k in ("steps", "train_seconds", "loss_first", "loss_last")},
                            "float_before_vs_after": qat["validation"]["float_before_vs_after"]}}
    return {"command": train_command(extra["train_config"]), **common,
            "started_from": start and {k: v for k, v in start.items() if k != "train_images_sha256"},
            "summary": extra.get("metrics")}


def write_results(path: Path, release: Path, half: Path, size: float) -> None:
    """The default model's record for benchmarks/results: how it was trained (HALF: the fp16-stored checkpoint it
    shipped) and released, and its numbers."""
    from lmliqa.manifest import read_manifest
    from lmliqa.models.checkpoint import read_metadata
    from lmliqa.provenance import provenance

    m = read_manifest(release)
    training = training_record(read_metadata(half)["extra"])
    path.write_text(json.dumps({
        "provenance": provenance(),
        "training": {**training, "n_images": m["checkpoint"]["trained_on"]["n_images"]},
        "release": {"name": m["name"], "command": m["provenance"]["command"], "commit": m["provenance"]["commit"],
                    "data": m["data"], "accuracy": m["accuracy"], "cross_validation": m["cross_validation"],
                    "artifacts": {n: {k: a[k] for k in ("target", "precision", "gates")}
                                  for n, a in m["artifacts"].items()}},
        "wheel_mb": round(size, 3), "budget_mb": BUDGET_MB}, indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

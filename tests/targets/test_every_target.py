"""The contract every registered target keeps, one test id per target, generated from the registry: its export and
quantize outcomes are typed and honest, every artifact it writes carries the torch reference's contract and runs
within its precision's gate where this machine runs it, and its probe answers for every precision it declares.
What is specific to one target lives in tests/targets/test_<target>.py (a test below checks each exists)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import capability, in_suite_release

from lmliqa import targets
from lmliqa.fidelity import compare
from lmliqa.stages import Outcome, Step
from lmliqa.targets import Precision, Stage, Support

EXPORTABLE = targets.names(Stage.EXPORT)
QUANTIZABLE = targets.names(Stage.QUANTIZE)
HERE = Path(__file__).parent


@pytest.mark.parametrize("name", targets.names())
def test_every_target_has_its_own_test_module(name):
    assert (HERE / f"test_{name}.py").is_file(), f"add tests/targets/test_{name}.py for the {name} target"


@pytest.mark.parametrize("name", targets.names())
def test_probe_answers_for_every_declared_precision(name):
    t = targets.get(name)
    caps = {c.precision: c for c in t.probe()}
    assert set(t.precisions) <= set(caps), (name, sorted(caps))
    assert all(isinstance(c.support, Support) and c.target == name for c in caps.values())


@pytest.mark.parametrize("name", EXPORTABLE)
def test_export_outcome_is_typed_and_its_files_exist(exported, name):
    in_suite_release(name)
    _, _, results = exported
    r = results[name]
    assert r.step is Step.EXPORT and r.target == name
    assert r.outcome in (Outcome.OK, Outcome.PARTIAL), r.status
    assert r.paths and all(Path(p).exists() for p in r.paths)
    if r.outcome is Outcome.PARTIAL:          # some of its files need what this machine lacks: it says which
        assert r.reason and not targets.get(name).missing(Stage.EXPORT) and targets.get(name).missing(Stage.RUNTIME)


def _artifacts(folder, name, precisions):
    return [a for a in targets.discover(folder) if a.target.name == name and a.precision in precisions]


@pytest.mark.parametrize("name", EXPORTABLE)
def test_every_artifact_carries_the_reference_contract(exported, name):
    from lmliqa.runtimes import load

    in_suite_release(name)
    ckpt, out, _ = exported
    reference = load(ckpt).metadata
    arts = _artifacts(out, name, set(Precision))
    assert arts or name == "tensorrt"            # TensorRT's engines need TensorRT; its ONNX forms are onnx artifacts
    for a in arts:
        assert a.metadata["contract"] == reference["contract"] and a.metadata["score"] == reference["score"], a.name
        assert a.metadata["float_scopes"]["default"] and a.metadata["regions"]


def _gate_check(out, name, precisions, reference, photos):
    """Every artifact of NAME stored in one of PRECISIONS, scored on PHOTOS where it runs here, within its gate;
    skipped with the machine's reason when none runs here."""
    from lmliqa.runtimes import load

    in_suite_release(name)
    arts = _artifacts(out, name, precisions)
    if not arts:
        pytest.skip(f"{name} wrote no {'/'.join(sorted(p.value for p in precisions))} artifact here")
    why_not = {a.name: capability(name, a.precision.value) for a in arts}
    ran = [a for a in arts if why_not[a.name].support is Support.RUNS]
    if not ran:
        pytest.skip("; ".join(f"{n}: {c}" for n, c in why_not.items()))
    for a in ran:
        scorer = load(a.path, target=name)
        got = np.array([r.score for r in scorer.score_many(photos, batch_size=4)])
        fid = compare(reference, got)
        gate = a.target.gate(scorer.precision, scorer.weights)
        assert gate.check(fid), (a.name, str(gate), fid.max_abs, fid.mean_abs, fid.srcc_vs_ref)
        if a.precision is not Precision.FP32:
            assert fid.max_abs > 1e-4, (a.name, "it did not really run reduced precision")


@pytest.mark.parametrize("name", EXPORTABLE)
def test_fp32_artifacts_hold_the_fp32_gate_on_real_photos(exported, photos, torch_scores, name):
    _, out, _ = exported
    _gate_check(out, name, {Precision.FP32}, torch_scores, photos)


@pytest.mark.parametrize("name", EXPORTABLE)
def test_reduced_precision_artifacts_hold_their_gate(exported, photos, torch_scores, name):
    _, out, _ = exported
    _gate_check(out, name, {Precision.FP16, Precision.BF16}, torch_scores, photos)


@pytest.mark.parametrize("name", QUANTIZABLE)
def test_quantized_artifacts_hold_their_gate_on_photos_never_calibrated_on(quantized, photos, torch_scores, name):
    """INT8: SRCC(int8, torch) >= 0.99, mean |d| <= 1.0, rank flips <= 2 % on the 24 gate photos."""
    in_suite_release(name)
    _, out, report = quantized
    results = report.for_target(name)
    assert results and all(r.step is Step.QUANTIZE for r in results)
    assert not any(r.outcome is Outcome.FAILED for r in results), [r.status for r in results]
    for r in results:
        if r.gate is not None:                 # validated on the quantize step's own photos too
            assert r.gate_pass, (r.artifact, r.status, r.fidelity)
    _gate_check(out, name, {p for p in Precision if p.quantized}, torch_scores, photos)

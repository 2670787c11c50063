"""Co-simulation of LinkFifo on Verilator through the whole plumbing (build cache, cocotb runner, drivers,
monitors, scoreboard, watchdog), for two configs; and proof that the plumbing catches broken hardware."""

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.hw.link_fifo import LinkFifo
from mozart.hw.protocol import link_signature
from mozart.model.config import load_config, override
from mozart.sim import cosim
from mozart.sim.build import build
from mozart.sim.cosim import CosimError, CosimFailure
from mozart.sim.designs import DESIGNS, Design, design

pytestmark = pytest.mark.cosim

TINY = load_config("tiny")
CONFIGS = {
    "tiny": TINY,
    "flit128-depth2": override(TINY, {"hardware.flit_bits": 128, "hardware.buffer_depth": 2}),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def fifo_build(request):
    """One Verilator build per config, shared by the module's tests (cached across runs too)."""
    return build("fifo", CONFIGS[request.param])


def test_fifo_passes_every_testbench_test(fifo_build):
    result = cosim.run(fifo_build, seed=1)  # raises CosimFailure, naming the failed tests, on a failure
    assert result.tests == 3 and result.failed == 0
    totals = result.totals()
    assert totals["packets"] == 300 + 60 + 40
    assert set(result.summary) == {"test_random_packets", "test_heavy_backpressure", "test_full_throughput"}
    assert all(s["flit_bits"] == fifo_build.cfg.hardware.flit_bits for s in result.summary.values())
    assert result.waveform is None


def test_seed_and_options_reach_the_testbench(fifo_build):
    result = cosim.run(fifo_build, seed=7, testcase="test_random_packets", extra_env={"MOZART_PACKETS": "25"})
    assert result.tests == 1 and result.seed == 7
    assert result.summary["test_random_packets"]["packets"] == 25


# -- broken hardware must fail, with a message that says why ---------------------------------------------

class CorruptFifo(wiring.Component):
    """A LinkFifo whose output flips data bit 3 of every flit."""

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({"i": In(link_signature(cfg)), "o": Out(link_signature(cfg))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = LinkFifo(self._cfg)
        wiring.connect(m, wiring.flipped(self.i), fifo.i)
        m.d.comb += [self.o.valid.eq(fifo.o.valid), fifo.o.ready.eq(self.o.ready),
                     self.o.payload.eq(fifo.o.payload), self.o.payload.data.eq(fifo.o.payload.data ^ 8)]
        return m


class SinkFifo(CorruptFifo):
    """A LinkFifo that swallows every flit: its output never becomes valid."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.o.valid.eq(0)
        return m


def mutant(cls) -> Design:
    fifo = design("fifo")
    return Design(f"fifo-{cls.__name__.lower()}", f"{__name__}:{cls.__name__}", fifo.testbench, fifo.toplevel,
                  cls.__doc__)


def test_corrupted_data_fails_with_the_scoreboard_message():
    with pytest.raises(CosimFailure) as exc:
        cosim.run(mutant(CorruptFifo), TINY, seed=1, testcase="test_random_packets",
                  extra_env={"MOZART_PACKETS": "20"})
    message = str(exc.value)
    assert "0 passed, 1 failed, 0 skipped" in message and "test_random_packets" in message
    assert "fifo scoreboard: port o must emit only expected packets" in message
    assert "payload flit 0" in message or "header kind must be" in message


def test_lost_flits_fail_with_the_watchdog_message():
    result = cosim.run(mutant(SinkFifo), TINY, seed=1, testcase="test_random_packets",
                       extra_env={"MOZART_PACKETS": "20"}, check=False)  # check=False: the result, not a raise
    assert not result.ok and result.failed_tests == ("test_random_packets",)
    with pytest.raises(CosimFailure, match=r"(?s)DeadlockError: fifo watchdog: no flit moved .* for 200 cycles"
                       r".*while work is pending: port o: 20 packets"):
        result.check()


def test_bad_arguments_are_clear():
    built = build("fifo", TINY)
    with pytest.raises(CosimError, match=r"seed must be a non-negative integer, not -1"):
        cosim.run(built, seed=-1)
    with pytest.raises(CosimError, match=r"cfg must be the config the Build was made for \('tiny'\) or None"):
        cosim.run(built, CONFIGS["flit128-depth2"], seed=1)
    with pytest.raises(CosimError, match=r"must run at least one test of mozart.tb.tb_fifo matching 'nope'"):
        cosim.run(built, seed=1, testcase="nope")


def test_cli_runs_the_testbench_with_waves(capsys):
    from mozart.sim.cli import main
    assert main(["cosim", "fifo", "--config", "tiny", "--seed", "2", "--waves", "--test", "test_full_throughput"]) == 0
    out = capsys.readouterr().out
    assert "cosim fifo (config tiny, seed 2): 1 passed, 0 failed, 0 skipped" in out
    assert "cycles/s inside the tests" in out and "40 packets" in out
    waveform = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("waveform: "))
    assert waveform.endswith("dump.vcd") and "$var" in open(waveform).read(4096)


def test_cli_unknown_block_is_one_line_exit_2(capsys):
    from mozart.sim.cli import main
    with pytest.raises(SystemExit) as exit_status:
        main(["cosim", "nope", "--config", "tiny"])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err
    assert err == ("mozart cosim: error: argument BLOCK: invalid choice: 'nope' (choose from "
                   + ", ".join(f"'{name}'" for name in sorted(DESIGNS)) + ")\n")


def test_timeout_kills_a_long_run():
    with pytest.raises(CosimError, match=r"cosim fifo \(config tiny, seed 1\) must finish within 2 s, but was killed"):
        cosim.run(build("fifo", TINY), seed=1, testcase="test_random_packets", timeout=2,
                  extra_env={"MOZART_PACKETS": "1000000"})


def test_runs_of_one_seed_keep_their_own_folders():
    built = build("fifo", TINY)
    first = cosim.run(built, seed=5, testcase="test_full_throughput")
    second = cosim.run(built, seed=5, testcase="test_full_throughput")
    assert first.run_dir != second.run_dir and first.log.is_file() and second.log.is_file()
    assert first.run_dir.name.startswith("tb_fifo-seed5-")

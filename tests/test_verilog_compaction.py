"""Zero-initialised memories in the generated Verilog are written as one loop, not one line per word."""

import re

from mozart.model.config import load_config
from mozart.sim.build import compact_zero_init, verilog_text

BLOCK = """  reg [7:0] mem [2:0];
  initial begin
    mem[0] = 8'h00;
    mem[1] = 8'h00;
    mem[2] = 8'h00;
  end
"""


def test_all_zero_block_becomes_a_loop():
    out = compact_zero_init(BLOCK)
    assert "initial for (mozart_zero_init_1 = 0; mozart_zero_init_1 < 3;" in out
    assert "mem[mozart_zero_init_1] = 8'h0;" in out and "mem[1]" not in out


def test_decimal_zeros_and_escaped_names():
    text = "  initial begin\n    \\$5 [0] = 32'd0;\n    \\$5 [1] = 32'd0;\n  end\n"
    assert "\\$5 [mozart_zero_init_1] = 32'h0;" in compact_zero_init(text)


def test_other_initial_blocks_are_kept():
    nonzero = BLOCK.replace("mem[1] = 8'h00", "mem[1] = 8'h01")
    gap = BLOCK.replace("mem[2]", "mem[5]")
    two = BLOCK.replace("mem[2]", "other[2]")
    for text in (nonzero, gap, two):
        assert compact_zero_init(text) == text


def test_wafer_verilog_has_no_per_word_zero_lines():
    text = verilog_text("root", load_config("tiny"))
    assert "mozart_zero_init_" in text
    assert not re.search(r"^ +\S+ ?\[\d+\] = \d+'h0+;$", text, re.MULTILINE)


def test_a_memory_declared_without_initial_block_gets_the_zero_loop():
    text = "  reg [7:0] mem [2:0];\n  reg \\$5  [9:0];\n  always @(posedge clk) mem[0] <= 8'h01;\n"
    out = compact_zero_init(text)
    assert "initial for (mozart_zero_init_1 = 0; mozart_zero_init_1 < 3;" in out and "mem[mozart_zero_init_1] = 8'h0;" \
        in out
    assert "\\$5 [mozart_zero_init_2] = 1'h0;" in out
    assert compact_zero_init(out) == out, "a memory with its loop gets no second one"
    assert compact_zero_init(BLOCK).count("initial") == 1


def test_leaving_the_zero_init_out_of_the_conversion_gives_the_same_verilog():
    # verilog_text leaves the all-zero init of every memory out of Amaranth's RTLIL (minutes for a large DRAM
    # model); the loops compact_zero_init writes back must make it the Verilog of a plain conversion
    from amaranth.back import verilog

    from mozart.sim.build import _design
    cfg, d = load_config("wafer4x4"), _design("memctrl")
    plain = compact_zero_init(verilog.convert(d.build(cfg, simulation=True), name=d.sim_toplevel, emit_src=False))
    assert verilog_text("memctrl", cfg, simulation=True) == plain
    assert "mem[mozart_zero_init_" in plain

"""Payload layouts and small signatures between the expert chiplet's components (:mod:`mozart.hw.chiplet`).

Every width comes from the config through :class:`mozart.model.protocol.Protocol`; each layout is written
once here and used by both ends of its stream.
"""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from mozart.model.golden_backward import step_grad_bits
from mozart.model.protocol import Protocol, index_bits

__all__ = ["token_layout", "loaded_layout", "job_layout", "restore_request_layout", "partial_layout", "hidden_layout",
           "zero_layout", "issue_layout", "slot_lookup_signature", "slot_expert_signature", "ring_signature",
           "memory_write_signature", "backward_job_layout", "gradient_word_layout", "gate_grads_layout",
           "backward_issue_layout"]


def slot_lookup_signature(cfg) -> wiring.Signature:
    """Asks which weight slot holds local expert ``expert`` completely (combinational answer)."""
    proto = Protocol(cfg)
    return wiring.Signature({"expert": Out(proto.expert_bits), "found": In(1), "slot": In(proto.slot_bits)})


def slot_expert_signature(cfg) -> wiring.Signature:
    """Asks which local expert a weight slot holds (combinational answer, the weight loader's slot table)."""
    proto = Protocol(cfg)
    return wiring.Signature({"slot": Out(proto.slot_bits), "expert": In(proto.expert_bits)})


def ring_signature(token_slots: int) -> wiring.Signature:
    """The token ring's free entry: where the next token goes (``entry``) and whether there is one (``room``)."""
    return wiring.Signature({"entry": Out(range(token_slots)), "room": Out(1)})


def memory_write_signature(depth: int, flit_bits: int) -> wiring.Signature:
    """The write port of a ``lib.memory.Memory`` of ``depth`` flits, as its writer sees it (flip it)."""
    return WritePort.Signature(addr_width=ceil_log2(depth), shape=flit_bits)


def token_layout(cfg) -> data.StructLayout:
    """A token received whole (DISPATCH): its local expert mask and gates (the route word), tag, flags and the
    record its pre-activations are saved in."""
    experts = cfg.experts_per_chiplet
    return data.StructLayout({"experts": unsigned(experts), "gates": unsigned(experts * cfg.numerics.gate_bits),
                              "tag": unsigned(cfg.hardware.tag_bits), "reduce": 1, "save": 1,
                              "save_index": unsigned(Protocol(cfg).save_index_bits), "backward": 1})


def loaded_layout(cfg) -> data.StructLayout:
    """A weight slot now holds an expert completely: what its LOADED packet reports."""
    proto = Protocol(cfg)
    return data.StructLayout({"slot": unsigned(proto.slot_bits), "expert": unsigned(proto.expert_bits),
                              "tag": unsigned(cfg.hardware.tag_bits)})


def job_layout(cfg, token_slots: int) -> data.StructLayout:
    """One (token, expert) job of the engine."""
    proto = Protocol(cfg)
    return data.StructLayout({
        "tok": unsigned(index_bits(token_slots)),   # activation-buffer entry of the token
        "wslot": unsigned(proto.slot_bits),     # resident weight slot of the expert
        "expert": unsigned(proto.expert_bits),  # local expert index (saved-activation address, release)
        "gate": unsigned(cfg.numerics.gate_bits),
        "first": 1,                             # first selected expert of the token: the partial starts at 0
        "last": 1,                              # last selected expert: the partial is complete after it
        "none": 1,                              # the token selects no expert here: its partial is all zero
        "save": 1,                              # also output the pre-activation vector (activation saving)
        "save_index": unsigned(proto.save_index_bits),  # the token record it is saved in
        "tag": unsigned(cfg.hardware.tag_bits),
        "reduce": 1,
        "backward": 1,                          # a backward job (the backward engine's), not a forward one
    })


def restore_request_layout(cfg, token_slots: int) -> data.StructLayout:
    """A backward token's restore: its activation-buffer entry, its local expert mask, its record and its tag (the
    reads carry it)."""
    return data.StructLayout({"entry": range(token_slots), "experts": unsigned(cfg.experts_per_chiplet),
                              "save_index": unsigned(Protocol(cfg).save_index_bits),
                              "tag": unsigned(cfg.hardware.tag_bits)})


def partial_layout(cfg) -> data.StructLayout:
    """One token's complete partial (the gate-weighted sum of its local experts' outputs)."""
    return data.StructLayout({"tag": unsigned(cfg.hardware.tag_bits), "reduce": 1,
                              "data": data.ArrayLayout(signed(cfg.numerics.partial_bits), cfg.moe.d_model)})


def hidden_layout(cfg) -> data.StructLayout:
    """One saved pre-activation vector ``z`` (the requantised ``W1 x``) of a (token, expert) job, with the token's
    tag and record (``save_index``) and the local expert: where it goes in DRAM."""
    proto = Protocol(cfg)
    return data.StructLayout({"tag": unsigned(cfg.hardware.tag_bits), "save_index": unsigned(proto.save_index_bits),
                              "expert": unsigned(proto.expert_bits),
                              "data": data.ArrayLayout(signed(cfg.numerics.act_bits), cfg.moe.d_ff)})


def zero_layout(cfg) -> data.StructLayout:
    """A token that selects no local expert: its partial is all zero."""
    return data.StructLayout({"tag": unsigned(cfg.hardware.tag_bits), "reduce": 1})


def issue_layout(cfg) -> data.StructLayout:
    """One issued chunk of ``mac_lanes`` MACs: where its operands sit and what its result is for.

    ``w_sub``/``x_sub`` select the lane chunk inside the weight/activation flit read in this cycle, ``chunk``
    the chunk of hidden registers (W2 operands); ``info`` travels down the pipeline with the chunk.
    """
    proto, moe, lanes = Protocol(cfg), cfg.moe, cfg.hardware.mac_lanes
    longest = max(moe.d_model, moe.d_ff)
    info = data.StructLayout({"p2": 1, "row": unsigned(index_bits(longest)), "first_chunk": 1, "last_chunk": 1,
                              "gate": unsigned(cfg.numerics.gate_bits), "first": 1, "last": 1, "save": 1,
                              "save_index": unsigned(proto.save_index_bits),
                              "tag": unsigned(cfg.hardware.tag_bits), "reduce": 1,
                              "expert": unsigned(proto.expert_bits)})
    flit_bits = cfg.hardware.flit_bits
    return data.StructLayout({
        "w_sub": unsigned(index_bits(flit_bits // cfg.numerics.weight_bits // lanes)),
        "x_sub": unsigned(index_bits(flit_bits // cfg.numerics.act_bits // lanes)),
        "chunk": unsigned(index_bits(longest // lanes)),
        "info": info,
    })


# -- the backward engine (:mod:`mozart.hw.expert_backward_engine`) --------------------------------------------
def backward_job_layout(cfg, token_slots: int, restore_slots: int) -> data.StructLayout:
    """One backward (token, expert) job: where its dY and x (activation buffer) and z (restore buffer) sit,
    the expert's weight slot (= its gradient slot), local index and raw gate, and the token's flags."""
    proto = Protocol(cfg)
    return data.StructLayout({
        "tok": unsigned(index_bits(token_slots)),       # activation-buffer entry: dY then x
        "restore": unsigned(index_bits(restore_slots)),  # restore-buffer entry: the expert's saved z
        "wslot": unsigned(proto.slot_bits),             # weight slot of the expert and its gradient slot
        "expert": unsigned(proto.expert_bits),          # local expert index (gate-gradient position, release)
        "gate": unsigned(cfg.numerics.gate_bits),
        "first": 1,                                     # first selected expert of the token
        "last": 1,                                      # last selected expert: partial and gate gradients done
        "none": 1,                                      # no local expert: zero partial, no gate gradients
        "tag": unsigned(cfg.hardware.tag_bits),
        "reduce": 1,
    })


def gradient_word_layout(cfg) -> data.ArrayLayout:
    """One word of the gradient SRAM: ``mac_lanes`` weight gradients of ``step_grad_bits`` signed bits."""
    return data.ArrayLayout(signed(step_grad_bits(cfg)), cfg.hardware.mac_lanes)


def gate_grads_layout(cfg) -> data.StructLayout:
    """A token's gate gradients: its local expert mask and ``dg`` per local expert (0 where not selected)."""
    experts = cfg.experts_per_chiplet
    return data.StructLayout({"tag": unsigned(cfg.hardware.tag_bits), "experts": unsigned(experts),
                              "dg": data.ArrayLayout(signed(cfg.numerics.acc_bits), experts)})


def backward_issue_layout(cfg, geometry) -> data.StructLayout:
    """One issued backward op (``mac_lanes`` MACs) and what travels down the pipeline with it.

    ``w2_pass`` picks the pass (W2 rows first, then W1 rows), ``through`` the half of the chunk (1: the
    product through the weights into ``u``/``dx``; 0: the weight-gradient product into the gradient SRAM).
    ``w_sub``/``vector_sub`` select the lane chunk in the weight flit and in the vector operand's flit (z in the
    W2 pass, x in the W1 pass), ``row_element`` the row's scalar in its flit (dY[i], then z[j]).
    """
    lanes = cfg.hardware.mac_lanes
    longest = max(geometry.d_model, geometry.d_ff)
    return data.StructLayout({
        "w2_pass": 1, "through": 1,
        "row": unsigned(index_bits(longest)), "chunk": unsigned(index_bits(longest // lanes)),
        "first_row": 1, "last_row": 1, "last_op": 1,
        "w_sub": unsigned(index_bits(geometry.w_per_flit // lanes)),
        "vector_sub": unsigned(index_bits(geometry.a_per_flit // lanes)),
        "row_element": unsigned(index_bits(geometry.a_per_flit)),
        "grad_word": unsigned(index_bits(geometry.grad_depth)),
        "gate": unsigned(cfg.numerics.gate_bits), "first": 1, "last": 1,
        "expert": unsigned(Protocol(cfg).expert_bits), "tag": unsigned(cfg.hardware.tag_bits), "reduce": 1,
    })

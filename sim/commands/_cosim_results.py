"""What ``mozart cosim BLOCK`` and ``mozart cosim wafer`` print: where human lines go and the ``--json`` documents.

Not a subcommand (the leading underscore keeps :func:`mozart.sim.cli.build_parser` from registering it).
"""

from __future__ import annotations

import sys


def say(args):
    """Where human lines go: stdout, or stderr when stdout carries the --json document."""
    return sys.stderr if args.json else sys.stdout


def counts(result) -> dict:
    """Passed, skipped and failed tests apart (the result's own counts where it has them)."""
    skipped = getattr(result, "skipped", 0)
    passed = getattr(result, "passed", result.tests - result.failed - skipped)
    return {"tests": result.tests, "passed": passed, "skipped": skipped, "failed": result.failed,
            "failed_tests": list(result.failed_tests)}


def result_json(result) -> dict:
    return {"block": result.design, "config": result.config, "seed": result.seed, "ok": result.ok,
            **counts(result), "summary": result.summary, "run_dir": str(result.run_dir), "log": str(result.log),
            "waveform": str(result.waveform) if result.waveform else None, "seconds": result.seconds,
            "sim_time_ns": result.sim_time_ns}


def layer_json(layer) -> dict:
    return {"variant": str(layer.variant), **result_json(layer.cosim)}

"""A helper of the command-line tests (not a test module): run ``mozart`` in-process and capture it."""

from mozart.sim.cli import main


def run(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``mozart *argv`` (argparse's exits included)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err

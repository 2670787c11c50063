"""Errors that reach a user: each names the thing, the value and the rule.

The command line turns any :class:`MozartError` into one line on stderr and exit status 2; library users
catch the subclass they care about.
"""


class MozartError(Exception):
    """Base of every error caused by bad user input (configs, traces, placements, schedules, arguments)."""


class ConfigError(MozartError, ValueError):
    """A wafer config, preset or config file is invalid."""


class TraceError(MozartError, ValueError):
    """A routing trace file or array is malformed."""


class PlacementError(MozartError, ValueError):
    """A placement (expert -> chiplet -> group) is invalid or does not fit the config."""


class ScheduleError(MozartError, ValueError):
    """A streaming schedule is invalid (ordering, slots, dependencies)."""


class ProtocolError(MozartError, ValueError):
    """A packet or flit sequence violates the on-package protocol."""

"""The wafer performance model: an event-driven model of one training step (see ``docs/performance.md``).

- :mod:`.parameters` the full-size parameters, each citing the paper or listed as an assumption;
- :mod:`.timing`    :class:`HardwareTiming`, the latency/throughput interface (full size or RTL-scaled);
- :mod:`.workload`  :class:`Workload`, MACs and bytes per token, pair and layer;
- :mod:`.systolic`  GEMMs on weight-stationary systolic arrays (expert and attention compute);
  :mod:`.scalesim_check` its cross-check against SCALE-Sim;
- :mod:`.capacity`  which layers' weights fit a group's HBM2 stack (the rest stream from the SSD tier);
- :mod:`.energy`    energy per step by component;
- :mod:`.network`   the NoP-Tree and the 2D mesh;
- :mod:`.engine`    the event-driven executor of schedules;
- :mod:`.step`      one training step (both readings of the paper's micro-batches); :mod:`.evaluation` the
  paper's comparisons; :mod:`.report` the tables and the checks against the paper; :mod:`.breakdown` and
  :mod:`.plots` the latency breakdown and charts.
"""

from .parameters import PerfParams, load_params, model_names, params_for
from .step import StepResult, placement_c_t, simulate_step, step_schedules
from .timing import HardwareTiming
from .workload import Workload

__all__ = ["PerfParams", "load_params", "model_names", "params_for", "HardwareTiming", "Workload", "StepResult",
           "simulate_step", "step_schedules", "placement_c_t"]

"""The contract of every hardware block as plain Python: its parameters and documented latency and throughput.

Each Amaranth component of ``mozart.hw`` builds its contract from the config (and exposes it as ``.contract``);
the performance model, the testbenches and the benchmarks read the same contract without building any hardware.
One module per block:

- :mod:`.link_fifo`  :class:`LinkFifoContract` (a link's flit FIFO, the switch's queues, the root's group queues)
- :mod:`.switch`     :class:`SwitchContract`
- :mod:`.chiplet`    :class:`EngineGeometry` and :class:`ChipletContract`
- :mod:`.memctrl`    :class:`MemoryControllerContract` (with the DRAM's :class:`~mozart.model.dram_timing.DramTiming`)
- :mod:`.root`       :class:`RootContract`
"""

from .chiplet import ChipletContract, EngineGeometry
from .link_fifo import LinkFifoContract
from .memctrl import MemoryControllerContract
from .root import RootContract
from .switch import SwitchContract

__all__ = ["LinkFifoContract", "SwitchContract", "EngineGeometry", "ChipletContract", "MemoryControllerContract",
           "RootContract"]

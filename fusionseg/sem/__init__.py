"""The SEM domain: BSE image + sparse EDS spectra -> mineral phase map, as one package beside the core.

It plugs in like a third-party domain (`fusionseg.registry._BUILTIN_MODULES` imports it by name, the
core imports nothing from it):

* ``meta``: `SemMeta`, the typed ``Sample.meta.domain`` slot (energy calibration, beam energy), registered in
  ``DOMAINS``; ``minerals`` / ``physics``: the mineral library and X-ray physics used on real files and
  by the simulator; ``identify``: library identification and clustering of spectra, and the ``identified``
  point labeller (``POINT_LABELLERS``);
* ``data``: vendor readers and sparse acquisition (``sem-folder``, ``eds-file`` sources), the simulator
  (``sem-synthetic``); ``encoders``: spectrum encoders (``element-windows``, ``pca``, ``learned``,
  ``library-posterior``);
* ``segment``, ``demo``, ``export``: a user's field -> maps, tables and reports; ``commands``: ``fusionseg
  segment|demo|simulate`` (``COMMANDS``) and the predict writer.
"""

from fusionseg.sem import commands, data, encoders, identify, meta
from fusionseg.sem.export import prediction
from fusionseg.sem.meta import EnergyAxis, SemMeta

__all__ = ["EnergyAxis", "SemMeta", "commands", "data", "encoders", "identify", "meta", "prediction"]

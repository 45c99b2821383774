"""Built-in stages. Each module registers its stage with :func:`trtcompress.stage.register_stage`.

Adding a stage is one module here and one import line below.
"""
from __future__ import annotations

import importlib

_BUILTIN = ("quantize", "lowrank")  # module names under trtcompress.stages, imported lazily by the registry

for _name in _BUILTIN:
    importlib.import_module(f"{__name__}.{_name}")

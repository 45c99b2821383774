"""Built-in stages. Each module registers its stage with :func:`trtcompress.stage.register_stage`.

Adding a stage is one module here and its name in ``BUILTIN``.
"""
from __future__ import annotations

BUILTIN = ("normalize", "sparsify", "quantize", "lowrank", "share", "finetune")  # module names under trtcompress.stages, imported by the registry on first lookup

"""TensorRT: version facts, engine builds and runs through Polygraphy (tensorrt imported lazily).

``version`` (what each TensorRT can do), ``config`` (:class:`BuildConfig`), ``plan`` (the one
mapping to a :class:`BuildPlan`), ``loaders`` (plan -> Polygraphy loaders), ``build``
(:func:`build_engine`, :func:`plan_build`), ``engine`` (loading with the sidecar check),
``sidecar``, ``report`` (inspector and builder-log parsers), ``trtexec``, ``fp16`` (ONNX to
float16), ``plugins``, ``gpu`` (CUDA events and buffers through cuda-python or torch), ``weights``
(the dense weights a refittable engine holds, by name, without TensorRT), ``refit`` (a weight-stripped
engine filled from a packed artifact, TensorRT >= 10).
This package imports none of them on import: ``quant.cache`` reads ``version`` only.
"""

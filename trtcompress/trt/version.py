"""TensorRT versions and what each one can do: the one place where version differences live.

Every fact here is from a public source for the version it names (../shared/FIELD.md has the
table and the sources); code that depends on a TensorRT version asks a :class:`TrtVersion`
instead of comparing version strings itself.
"""
from __future__ import annotations

import dataclasses
import re

from ..errors import ConfigError

__all__ = ["TrtVersion", "parse_version", "installed_version", "SUPPORTED"]

# Oldest of each line that the product targets (JetPack 6.0 ships 8.6, JetPack 6.1/6.2 ship 10.3).
SUPPORTED = ("8.6", "10.x", "11.x")


@dataclasses.dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int = 0
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def max_onnx_opset(self) -> int:
        """Newest default-domain opset the ONNX parser of this version imports correctly.

        8.6's parser stops at opset 17 (its ReduceMean importer ignores axes given as an input,
        the opset 18 form); 10.x and 11.x parse opset 20 and newer."""
        return 17 if self.major < 10 else 20

    @property
    def implicit_int8(self) -> bool:
        """Calibrators, the INT8 builder flag and calibration caches exist (removed in 11)."""
        return self.major < 11

    @property
    def precision_flags(self) -> bool:
        """``BuilderFlag.INT8`` / ``FP16`` exist; 11.x has none (precision comes from the ONNX types)."""
        return self.major < 11

    @property
    def strongly_typed(self) -> bool:
        """Strongly typed networks are available (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``, 9.0+)."""
        return self.major >= 9

    @property
    def weakly_typed(self) -> bool:
        """Weak typing is available (deprecated in 10.12, removed in 11)."""
        return self.major < 11

    @property
    def dla(self) -> bool:
        """DLA is present: up to 10.7, and again from 11.4.1 (AGX Orin only)."""
        return self <= TrtVersion(10, 7, 99) or self >= TrtVersion(11, 4, 1)

    @property
    def weak_typing_deprecated(self) -> bool:
        """Weak typing (and the INT8/FP16 builder flags with it) is deprecated from 10.12 on."""
        return self >= TrtVersion(10, 12, 0)

    @property
    def python_plugins(self) -> bool:
        """Python plugins through ``tensorrt.plugin`` (the plugin decorators came in 10.6)."""
        return self >= TrtVersion(10, 6, 0)

    @property
    def weight_stripping(self) -> bool:
        """Weight-stripped, refittable engines: ``BuilderFlag.STRIP_PLAN`` and ``REFIT_IDENTICAL``
        (include/NvInfer.h of v10.0.0; 9.x had ``kWEIGHTLESS``, deprecated in 10.0), the ONNX parser's
        ``OnnxParserRefitter`` (python/src/parsers/pyOnnx.cpp, v10.0.0) and
        ``ICudaEngine.serialize_with_config`` with ``SerializationFlag.EXCLUDE_WEIGHTS`` (v10.0.0)."""
        return self.major >= 10

    @property
    def trtexec_plugin_flag(self) -> str:
        """trtexec's flag for a plugin library: ``--staticPlugins`` on 10.x and 11.x (``--plugins``
        is deprecated there); ``--plugins`` on 8.x, where every release accepts it."""
        return "--plugins" if self.major < 10 else "--staticPlugins"

    @property
    def int8_depthwise_needs_relu(self) -> bool:
        """An INT8 depthwise Conv builds only with ReLU/ReLU6 after it (8.x): TensorRT#3385 (8.5.2,
        DwConv+BN+Swish has no implementation, DwConv+BN+ReLU builds), TensorRT#4060 (8.6.11, a bare
        Q/DQ depthwise Conv has none); not reported for 10.x."""
        return self.major < 10

    @property
    def cache_version_number(self) -> int:
        """TensorRT's number in a calibration cache header: 8.5.2 -> 8502, 10.3.0 -> 100300."""
        if not self.implicit_int8:
            raise ConfigError(
                f"TensorRT {self} has no implicit INT8 (calibrators and calibration caches were removed in TensorRT 11); "
                "build from the explicit Q/DQ model instead (trtcompress quantize --target tensorrt)"
            )
        if self.major == 10:
            return self.major * 10000 + self.minor * 100 + self.patch
        if self.major in (7, 8):
            if self.minor > 9 or self.patch > 99:
                raise ConfigError(f"TensorRT version {self} does not fit the 8.x cache encoding")
            return self.major * 1000 + self.minor * 100 + self.patch
        raise ConfigError(f"TensorRT {self} is not supported for calibration caches (7.x, 8.x and 10.x are)")


def parse_version(text: str | TrtVersion, supported_only: bool = True) -> TrtVersion:
    """``"10.3.0"``, ``"10.3"``, ``"8.6.1.6"`` (TensorRT's own four-part form) -> :class:`TrtVersion`.

    ``supported_only=False`` accepts any version (a calibration cache header may name 7.x)."""
    if isinstance(text, TrtVersion):
        return text
    parts = re.findall(r"\d+", str(text))
    if not parts or not re.fullmatch(r"\s*\d+(\.\d+){0,3}\s*", str(text)):
        raise ConfigError(f"not a TensorRT version: {text!r}; give it as MAJOR.MINOR[.PATCH], e.g. 10.3.0")
    major, minor, patch = (int(p) for p in (parts + ["0", "0"])[:3])
    if supported_only and (major < 8 or (major == 8 and minor < 5) or major > 11):
        raise ConfigError(f"TensorRT {text} is not supported; trtcompress targets {', '.join(SUPPORTED)}")
    return TrtVersion(major, minor, patch)


def installed_version() -> TrtVersion:
    """The version of the TensorRT installed here (raises :class:`MissingDependencyError` naming
    the extra when there is none)."""
    from .._optional import require

    return parse_version(require("tensorrt", "building and running TensorRT engines").__version__)

"""The Fashion-MNIST networks trained here, as torch modules.

Imports torch at module level: only import this module after ``require("torch")`` succeeded
(``trtcompress.zoo`` does). The layer shapes are chosen for the compression stages: conv and
linear channel counts are multiples of 32 (TensorRT's 2:4 sparse kernels want that), the CNN has
residual Adds and a two-layer Gemm head, and the ViT writes attention as explicit
MatMul -> Softmax -> MatMul so the ONNX graph shows both attention matmuls, and the
MobileNetV3-style net has depthwise convs, squeeze-excite Muls and HardSwish/HardSigmoid.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FashionCNN", "FashionViT", "FashionMobileNetV3", "NETS"]


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class _Residual(nn.Module):
    """relu(x + bn(conv(relu(bn(conv(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.a = _conv_bn(channels, channels)
        self.b = _conv_bn(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.b(torch.relu(self.a(x))))


class FashionCNN(nn.Module):
    """28x28 grey -> 10 logits: a 4x4/2 stem, 2 residual blocks around a 3x3/2 conv, Gemm head (~0.5 M params)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32)), nn.ReLU(),  # 14x14
            _Residual(32),
            _conv_bn(32, 64, 2), nn.ReLU(),  # 7x7
            _Residual(64),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _Attention(nn.Module):
    """Multi-head self-attention with the two matmuls written out (no fused SDPA)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Block(nn.Module):
    """Pre-norm encoder layer: x + attn(ln(x)); x + mlp(ln(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class FashionViT(nn.Module):
    """28x28 grey -> 10 logits: 7x7 patches (16 tokens), dim 96, 4 heads, 3 layers, mean-pooled."""

    def __init__(self, num_classes: int = 10, patch: int = 7, dim: int = 96, depth: int = 3, heads: int = 4, mlp: int = 192):
        super().__init__()
        tokens = (28 // patch) ** 2
        self.embed = nn.Conv2d(1, dim, patch, patch)
        self.pos = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[_Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


class _SqueezeExcite(nn.Module):
    """MobileNetV3's channel attention: x * hardsigmoid(fc(relu(fc(mean(x))))), the fcs as 1x1 convs."""

    def __init__(self, channels: int, squeezed: int = 32):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * nn.functional.hardsigmoid(self.expand(s))


class _InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project (+ x when shapes match)."""

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, act: type[nn.Module]):
        super().__init__()
        # no expansion when hidden == cin, as in MobileNetV3's first block
        self.expand = nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act()) if hidden != cin else nn.Identity()
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False), nn.BatchNorm2d(hidden), act())
        self.se = _SqueezeExcite(hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class FashionMobileNetV3(nn.Module):
    """28x28 grey -> 10 logits with torchvision's MobileNetV3 block structure (~0.1 M params):
    hardswish stem, inverted residuals with depthwise 3x3/5x5 convs and squeeze-excite
    (hardsigmoid gate), a 1x1 conv + pooling + Linear/hardswish/Linear head. The first block
    strides to 7x7 at once (as MobileNetV3-Small's does), which keeps an epoch under two minutes."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.Hardswish())  # 14x14
        self.blocks = nn.Sequential(
            _InvertedResidual(32, 32, 32, 3, 2, nn.ReLU),  # 7x7
            _InvertedResidual(32, 96, 32, 3, 1, nn.Hardswish),
            _InvertedResidual(32, 128, 64, 5, 1, nn.Hardswish),
        )
        self.last = nn.Sequential(nn.Conv2d(64, 192, 1, bias=False), nn.BatchNorm2d(192), nn.Hardswish())
        self.head = nn.Sequential(nn.Linear(192, 128), nn.Hardswish(), nn.Dropout(0.1), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.blocks(self.stem(x))).mean((2, 3)))


NETS = {"fashion_cnn": FashionCNN, "fashion_vit": FashionViT, "fashion_mbv3": FashionMobileNetV3}

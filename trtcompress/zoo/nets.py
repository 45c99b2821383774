"""The two Fashion-MNIST networks trained here, as torch modules.

Imports torch at module level: only import this module after ``require("torch")`` succeeded
(``trtcompress.zoo`` does). The layer shapes are chosen for the compression stages: conv and
linear channel counts are multiples of 32 (TensorRT's 2:4 sparse kernels want that), the CNN has
residual Adds and a two-layer Gemm head, and the ViT writes attention as explicit
MatMul -> Softmax -> MatMul so the ONNX graph shows both attention matmuls.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FashionCNN", "FashionViT", "NETS"]


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


NETS = {"fashion_cnn": FashionCNN, "fashion_vit": FashionViT}

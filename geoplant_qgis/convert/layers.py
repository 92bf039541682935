"""ResNet-18 and Swin-T written with torch alone, state-dict compatible with torchvision's.

The converter builds GeoPlant's multimodal ensemble on torchvision's ``resnet18`` and
``swin_t`` when torchvision can be imported; where it cannot (PyTorch 2.13.0's CPU build
has no matching torchvision wheel on this platform), these definitions take their place.
Every parameter and buffer has the name and shape torchvision gives it, so a checkpoint
made with torchvision loads here unchanged, and the computation is the same: a
convolutional stem, four stages of basic residual blocks (ResNet), and a patch embedding,
four stages of (shifted) window attention with patch merging in between (Swin-T v1).
``tests/test_convert.py`` compares both on the same weights when torchvision is importable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

# -- ResNet-18 ---------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the input (projected when its shape changes)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's ``resnet18(weights=None)``: same attribute names, same forward."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, planes in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(
                self,
                f"layer{i}",
                nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)),
            )
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# -- Swin-T ------------------------------------------------------------------------------


class Permute(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x):
        return torch.permute(x, self.dims)


def _relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """For every pair of positions in a window, the row of the bias table holding their offset."""
    wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    offsets[:, :, 0] += wh - 1
    offsets[:, :, 1] += ww - 1
    offsets[:, :, 0] *= 2 * ww - 1
    return offsets.sum(-1).flatten()


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows, cyclically shifted by
    ``shift`` (Swin v1), with a learned relative position bias."""

    def __init__(self, dim: int, window: tuple[int, int], shift: tuple[int, int], heads: int):
        super().__init__()
        self.window, self.shift, self.heads = tuple(window), tuple(shift), heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        cells = (2 * window[0] - 1) * (2 * window[1] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(cells, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_position_index(self.window))

    def _bias(self) -> torch.Tensor:
        n = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)

    def forward(self, x):
        b, h, w, c = x.shape
        wh, ww = self.window
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        _, ph, pw, _ = x.shape
        # no shift along an axis the window already covers
        sh = 0 if wh >= ph else self.shift[0]
        sw = 0 if ww >= pw else self.shift[1]
        shifted = sh + sw > 0
        if shifted:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        windows = (ph // wh) * (pw // ww)
        x = (
            x.view(b, ph // wh, wh, pw // ww, ww, c)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(b * windows, wh * ww, c)
        )
        head_dim = c // self.heads
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias)
        qkv = qkv.reshape(x.size(0), x.size(1), 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * head_dim**-0.5).matmul(k.transpose(-2, -1)) + self._bias()
        if shifted:
            # positions that came from different regions before the roll must not attend
            regions = x.new_zeros((ph, pw))
            label = 0
            for rows in ((0, -wh), (-wh, -sh), (-sh, None)):
                for cols in ((0, -ww), (-ww, -sw), (-sw, None)):
                    regions[rows[0] : rows[1], cols[0] : cols[1]] = label
                    label += 1
            regions = regions.view(ph // wh, wh, pw // ww, ww).permute(0, 2, 1, 3).reshape(windows, wh * ww)
            mask = regions.unsqueeze(1) - regions.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
            attn = attn.view(x.size(0) // windows, windows, self.heads, x.size(1), x.size(1))
            attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, x.size(1), x.size(1))
        attn = F.softmax(attn, dim=-1)
        x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
        x = F.linear(x, self.proj.weight, self.proj.bias)
        x = x.view(b, ph // wh, pw // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
        if shifted:
            x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
        return x[:, :h, :w, :].contiguous()


class SwinBlock(nn.Module):
    """Pre-norm window attention and MLP, each added to its input (stochastic depth is the
    identity at inference)."""

    def __init__(self, dim: int, heads: int, window, shift, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = WindowAttention(dim, window, shift, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        hidden = int(dim * mlp_ratio)
        # indices 0 and 3 as in torchvision's MLP (Linear, GELU, Dropout, Linear, Dropout)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0)
        )

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), normalised, projected to 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=1e-5)

    def forward(self, x):
        h, w = x.shape[-3:-1]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat(
            [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], -1
        )
        return self.reduction(self.norm(x))


class SwinT(nn.Module):
    """torchvision's ``swin_t(weights=None)``: embed 96, depths 2-2-6-2, heads 3-6-12-24,
    7x7 windows, patches of 4 px; same attribute names, same forward."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        embed, depths, heads, window = 96, (2, 2, 6, 2), (3, 6, 12, 24), (7, 7)
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, embed, kernel_size=(4, 4), stride=(4, 4)),
                Permute([0, 2, 3, 1]),
                nn.LayerNorm(embed, eps=1e-5),
            )
        ]
        for stage, (depth, n_heads) in enumerate(zip(depths, heads, strict=True)):
            dim = embed * 2**stage
            blocks = [
                SwinBlock(dim, n_heads, window, (0, 0) if i % 2 == 0 else (window[0] // 2, window[1] // 2))
                for i in range(depth)
            ]
            layers.append(nn.Sequential(*blocks))
            if stage < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        features = embed * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(features, eps=1e-5)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):
        x = self.permute(self.norm(self.features(x)))
        return self.head(self.flatten(self.avgpool(x)))

"""Neural-network ops of Tensor: activations, matmul/einsum, convolution and pooling, normalization, losses,
attention, interpolation. Each is composed from Tensor's primitive ops, so autograd covers them all.
"""
from __future__ import annotations

import math

import numpy as np

from compiler.dtypes import dtypes


def _pair(x, n: int = 2) -> tuple[int, ...]:
  return (x,) * n if isinstance(x, int) else tuple(x)


class TensorNN:
  # ---- activations ------------------------------------------------------------------------------------------------
  def relu(self):
    return (self > 0).where(self, 0)

  def relu6(self):
    return self.relu() - (self - 6).relu()

  def leaky_relu(self, neg_slope: float = 0.01):
    return (self > 0).where(self, self * neg_slope)

  def elu(self, alpha: float = 1.0):
    return (self > 0).where(self, (self.exp() - 1) * alpha)

  def celu(self, alpha: float = 1.0):
    return self.maximum(0) + (((self / alpha).exp() - 1) * alpha).minimum(0)

  def selu(self, alpha: float = 1.67326, gamma: float = 1.0507):
    return self.elu(alpha) * gamma

  def sigmoid(self):
    return (1 + (-self).exp()).reciprocal()

  def logsigmoid(self):
    return -((-self).softplus())

  def hardsigmoid(self, alpha: float = 1 / 6, beta: float = 0.5):
    return (self * alpha + beta).relu() - (self * alpha + beta - 1).relu()

  def tanh(self):
    return 2.0 * (2.0 * self).sigmoid() - 1.0

  def sinh(self):
    return (self.exp() - (-self).exp()) / 2

  def cosh(self):
    return (self.exp() + (-self).exp()) / 2

  def hardtanh(self, min_val: float = -1, max_val: float = 1):
    return self.clip(min_val, max_val)

  def gelu(self):
    """GELU, tanh approximation (tinygrad's and torch's approximate='tanh')."""
    return 0.5 * self * (1 + (math.sqrt(2 / math.pi) * (self + 0.044715 * self * self * self)).tanh())

  def quick_gelu(self):
    return self * (self * 1.702).sigmoid()

  def silu(self):
    return self * self.sigmoid()

  swish = silu

  def hardswish(self):
    return self * (self + 3).relu6() * (1 / 6)

  def softplus(self, beta: float = 1.0):
    # log(1 + e^(bx))/b, computed stably as max(bx, 0) + log(1 + e^-|bx|)
    bx = self * beta
    return (bx.maximum(0) + (1 + (-bx.abs()).exp()).log()) * (1 / beta)

  def mish(self):
    return self * self.softplus().tanh()

  def softsign(self):
    return self / (1 + self.abs())

  def erf(self):
    """erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)."""
    t = 1.0 / (1.0 + 0.3275911 * self.abs())
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return self.sign() * (1.0 - poly * (-(self * self)).exp())

  # ---- linear algebra -------------------------------------------------------------------------------------------
  def dot(self, w):
    """Matrix product with numpy's broadcasting rules for 1-D and batched operands.

    Raises:
      ValueError: the contracted dimensions differ (both shapes are named).
    """
    x = self
    if x.ndim == 0 or w.ndim == 0:
      raise ValueError(f"matmul needs at least 1-D operands, got shapes {x.shape} and {w.shape}")
    k_x = x.shape[-1]
    k_w = w.shape[-2] if w.ndim >= 2 else w.shape[0]
    if k_x != k_w:
      raise ValueError(f"matmul shapes {x.shape} and {w.shape} do not match: {k_x} != {k_w} in the contracted dim")
    squeeze_x, squeeze_w = x.ndim == 1, w.ndim == 1
    if squeeze_x:
      x = x.reshape(1, k_x)
    if squeeze_w:
      w = w.reshape(k_w, 1)
    dt = x._broadcasted(w)[0].dtype if x.dtype != w.dtype else x.dtype
    x, w = x.cast(dt), w.cast(dt)
    # (..., n, 1, k) * (..., 1, m, k) summed over k
    out = (x.unsqueeze(-2) * w.transpose(-1, -2).unsqueeze(-3)).sum(-1)
    if squeeze_x:
      out = out.squeeze(-2)
    if squeeze_w:
      out = out.squeeze(-1)
    return out

  def matmul(self, w, reverse: bool = False):
    return w.dot(self) if reverse else self.dot(w)

  def linear(self, weight, bias=None):
    """x @ weight (+ bias); weight is (in, out) as in tinygrad (nn.Linear passes its weight transposed)."""
    out = self * weight if weight.ndim == 1 else self.dot(weight)
    return out if bias is None else out + bias

  @staticmethod
  def einsum(formula: str, *operands):
    """Einstein summation over any number of operands ('ij,jk->ik', implicit output when '->' is absent).

    Raises:
      ValueError: operand count or ranks do not match the formula, or a letter repeats inside one operand.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
      operands = tuple(operands[0])
    formula = formula.replace(" ", "")
    lhs, rhs = formula.split("->") if "->" in formula else (formula, None)
    inputs = lhs.split(",")
    if len(inputs) != len(operands):
      raise ValueError(f"einsum {formula!r} names {len(inputs)} operands, {len(operands)} given")
    letters: dict[str, int] = {}
    for spec, t in zip(inputs, operands):
      if len(spec) != t.ndim:
        raise ValueError(f"einsum operand {spec!r} has {len(spec)} letters for a tensor of shape {t.shape}")
      if len(set(spec)) != len(spec):
        raise ValueError(f"einsum operand {spec!r} repeats a letter (diagonals are not supported)")
      for c, s in zip(spec, t.shape):
        if letters.setdefault(c, s) != s and s != 1 and letters[c] != 1:
          raise ValueError(f"einsum letter {c!r} has sizes {letters[c]} and {s}")
        letters[c] = max(letters[c], s)
    if rhs is None:
      counts = {c: lhs.count(c) for c in letters}
      rhs = "".join(sorted(c for c, n in counts.items() if n == 1))
    order = list(rhs) + sorted(c for c in letters if c not in rhs)
    product = None
    for spec, t in zip(inputs, operands):
      perm = sorted(range(len(spec)), key=lambda i: order.index(spec[i]))
      t = t.permute(perm) if perm else t
      shape = [letters[c] if c in spec and t.shape[sorted(spec, key=order.index).index(c)] != 1 else 1 for c in order]
      t = t.reshape(shape)
      product = t if product is None else product * t
    full = tuple(letters[c] for c in order)
    product = product.expand(full) if product.shape != full else product
    summed = tuple(range(len(rhs), len(order)))
    return product.sum(summed) if summed else product

  # ---- windows, convolution, pooling ----------------------------------------------------------------------------
  def _pool(self, k_: tuple[int, ...], stride=1, dilation=1):
    """Sliding windows over the last len(k_) axes: shape (..., o1, .., on, k1, .., kn), as views (no copy)."""
    nd = len(k_)
    s_, d_ = _pair(stride, nd), _pair(dilation, nd)
    prefix, i_ = self.shape[:-nd], self.shape[-nd:]
    if any(k * d - d + 1 > i for k, d, i in zip(k_, d_, i_)):
      raise ValueError(f"window {k_} (dilation {d_}) is larger than the input {i_}")
    o_ = [(i - d * (k - 1) - 1) // s + 1 for i, d, k, s in zip(i_, d_, k_, s_)]
    x = self
    pre = [(0, p) for p in prefix]
    if all(k <= s for k, s in zip(k_, s_)) and all(d == 1 for d in d_):
      # non-overlapping windows: split each axis into (o, s) and keep the first k of every s
      x = x.pad(pre + [(0, max(0, o * s - i)) for o, s, i in zip(o_, s_, i_)])
      x = x.shrink(pre + [(0, o * s) for o, s in zip(o_, s_)])
      x = x.reshape(prefix + tuple(v for o, s in zip(o_, s_) for v in (o, s)))
      x = x.shrink(pre + [p for o, k in zip(o_, k_) for p in ((0, o), (0, k))])
      return x.permute(tuple(range(len(prefix))) + tuple(len(prefix) + 2 * j for j in range(nd)) +
                       tuple(len(prefix) + 2 * j + 1 for j in range(nd)))
    # overlapping windows: repeat each axis, lay it out in rows of length L = i + d (mod i), so row ky starts at
    # element ky*d; then element [ky, oy] = x[oy*s + ky*d]
    rows = []
    for i, d, o, s in zip(i_, d_, o_, s_):
      length = i + d
      while length < o * s:
        length += i
      rows.append(length)
    reps = [math.ceil(k * length / i) for k, length, i in zip(k_, rows, i_)]
    x = x.repeat([1] * len(prefix) + reps)
    x = x.shrink(pre + [(0, k * length) for k, length in zip(k_, rows)])
    x = x.reshape(prefix + tuple(v for k, length in zip(k_, rows) for v in (k, length)))
    x = x.shrink(pre + [p for k, o, s in zip(k_, o_, s_) for p in ((0, k), (0, o * s))])
    x = x.reshape(prefix + tuple(v for k, o, s in zip(k_, o_, s_) for v in (k, o, s)))
    x = x.shrink(pre + [p for k, o in zip(k_, o_) for p in ((0, k), (0, o), (0, 1))])
    x = x.reshape(prefix + tuple(v for k, o in zip(k_, o_) for v in (k, o)))
    return x.permute(tuple(range(len(prefix))) + tuple(len(prefix) + 2 * j + 1 for j in range(nd)) +
                     tuple(len(prefix) + 2 * j for j in range(nd)))

  def _padding_pairs(self, padding, nd: int) -> list[tuple[int, int]]:
    if isinstance(padding, int):
      return [(padding, padding)] * nd
    padding = tuple(padding)
    if len(padding) == nd:
      return [(p, p) for p in padding]
    if len(padding) == 2 * nd:  # torch-style flat (left, right, top, bottom): last axis first
      return [(padding[2 * (nd - 1 - j)], padding[2 * (nd - 1 - j) + 1]) for j in range(nd)]
    raise ValueError(f"padding {padding} must be an int, {nd} values or {2 * nd} values")

  def conv2d(self, weight, bias=None, groups: int = 1, stride=1, dilation=1, padding=0):
    """Convolution (cross-correlation) of (N, Cin, *spatial) with weight (Cout, Cin/groups, *kernel).

    Raises:
      ValueError: channel counts and groups disagree (the shapes are named).
    """
    nd = weight.ndim - 2
    n, cin = self.shape[:2]
    cout, cin_g = weight.shape[:2]
    if cin != cin_g * groups or cout % groups:
      raise ValueError(f"conv2d: input {self.shape} and weight {weight.shape} do not fit groups={groups} "
                       f"(need Cin == weight.shape[1]*groups and Cout % groups == 0)")
    k_ = weight.shape[2:]
    x = self.pad([(0, 0), (0, 0)] + self._padding_pairs(padding, nd))
    x = x._pool(k_, stride, dilation)  # (N, Cin, *o, *k)
    o_ = x.shape[2:2 + nd]
    x = x.reshape(n, groups, 1, cin_g, *o_, *k_)
    # -> (N, groups, 1, *o, Cin/g, *k): reduce axes last
    x = x.permute(0, 1, 2, *range(4, 4 + nd), 3, *range(4 + nd, 4 + 2 * nd))
    w = weight.reshape(1, groups, cout // groups, cin_g, *k_)
    w = w.reshape(1, groups, cout // groups, *([1] * nd), cin_g, *k_)
    out = (x * w).sum(tuple(range(3 + nd, 4 + 2 * nd)))
    out = out.reshape(n, cout, *o_)
    return out if bias is None else out + bias.reshape(1, -1, *([1] * nd))

  def conv_transpose2d(self, weight, bias=None, groups: int = 1, stride=1, dilation=1, padding=0,
                       output_padding=0):
    """Transposed convolution with weight (Cin, Cout/groups, *kernel), as the gradient of conv2d."""
    nd = weight.ndim - 2
    k_ = weight.shape[2:]
    s_, d_ = _pair(stride, nd), _pair(dilation, nd)
    pads = self._padding_pairs(padding, nd)
    op_ = _pair(output_padding, nd)
    x = self
    if any(s > 1 for s in s_):  # put s-1 zeros between input elements
      n, c = x.shape[:2]
      spatial = x.shape[2:]
      x = x.reshape(n, c, *[v for i in spatial for v in (i, 1)])
      x = x.pad([(0, 0), (0, 0)] + [p for s in s_ for p in ((0, 0), (0, s - 1))])
      x = x.reshape(n, c, *[i * s for i, s in zip(spatial, s_)])
      x = x.shrink([(0, n), (0, c)] + [(0, (i - 1) * s + 1) for i, s in zip(spatial, s_)])
    full = [(d * (k - 1) - pb, d * (k - 1) - pa + o) for k, d, (pb, pa), o in zip(k_, d_, pads, op_)]
    cin, cout_g = weight.shape[:2]
    w = weight.reshape(groups, cin // groups, cout_g, *k_).transpose(1, 2)
    w = w.reshape(groups * cout_g, cin // groups, *k_).flip(tuple(range(2, 2 + nd)))
    return x.conv2d(w, bias, groups=groups, dilation=dilation, padding=[p for pair in reversed(full)
                                                                          for p in pair])

  def max_pool2d(self, kernel_size=(2, 2), stride=None, dilation=1, padding=0):
    k_ = _pair(kernel_size)
    pads = self._padding_pairs(padding, len(k_))
    x = self.pad([(0, 0)] * (self.ndim - len(k_)) + pads, value=float("-inf")) if any(sum(p) for p in pads) else self
    return x._pool(k_, stride if stride is not None else k_, dilation).max(tuple(range(-len(k_), 0)))

  def avg_pool2d(self, kernel_size=(2, 2), stride=None, dilation=1, padding=0, count_include_pad: bool = True):
    k_ = _pair(kernel_size)
    pads = self._padding_pairs(padding, len(k_))
    axes = tuple(range(-len(k_), 0))
    x = self.pad([(0, 0)] * (self.ndim - len(k_)) + pads)
    pooled = x._pool(k_, stride if stride is not None else k_, dilation)
    if count_include_pad:
      return pooled.mean(axes)
    ones = self.ones_like().pad([(0, 0)] * (self.ndim - len(k_)) + pads)
    return pooled.sum(axes) / ones._pool(k_, stride if stride is not None else k_, dilation).sum(axes)

  # ---- normalization, dropout, embedding ------------------------------------------------------------------------
  def layernorm(self, axis=-1, eps: float = 1e-5):
    y = self - self.mean(axis, keepdim=True)
    return y * (y * y).mean(axis, keepdim=True).add(eps).rsqrt()

  def rms_norm(self, axis=-1, eps: float = 1e-6):
    return self * (self * self).mean(axis, keepdim=True).add(eps).rsqrt()

  def batchnorm(self, weight, bias, mean, invstd, axis=1):
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    shape = tuple(s if i in axes else 1 for i, s in enumerate(self.shape))
    x = self - mean.reshape(shape)
    if weight is not None:
      x = x * weight.reshape(shape)
    x = x * (invstd.reshape(shape) if invstd.ndim == len(axes) else invstd)
    return x + bias.reshape(shape) if bias is not None else x

  def dropout(self, p: float = 0.5):
    if not 0 <= p <= 1:
      raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not type(self).training or p == 0:
      return self
    keep = type(self).rand(*self.shape, device=self.device) >= p
    return keep.where(self, 0) * (1 / (1 - p)) if p < 1 else self.zeros_like()

  def one_hot(self, num_classes: int = -1):
    if num_classes == -1:
      num_classes = int(self.max().item()) + 1
    classes = type(self).arange(num_classes, device=self.device)
    return (self.unsqueeze(-1) == classes).where(1, 0)

  # ---- attention ------------------------------------------------------------------------------------------------
  def scaled_dot_product_attention(self, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False):
    """softmax(q k^T / sqrt(d) + mask) v; a bool mask keeps positions where it is True."""
    qk = self.matmul(key.transpose(-2, -1)) * (1 / math.sqrt(self.shape[-1]))
    if is_causal:
      causal = type(self).ones(qk.shape[-2], qk.shape[-1], device=self.device, dtype=dtypes.bool).tril()
      qk = causal.where(qk, float("-inf"))
    if attn_mask is not None:
      qk = attn_mask.where(qk, float("-inf")) if attn_mask.dtype == dtypes.bool else qk + attn_mask
    return qk.softmax(-1).dropout(dropout_p) @ value

  # ---- losses ---------------------------------------------------------------------------------------------------
  def _reduce_loss(self, reduction: str):
    if reduction == "mean":
      return self.mean()
    if reduction == "sum":
      return self.sum()
    if reduction == "none":
      return self
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")

  def binary_crossentropy(self, y, reduction: str = "mean"):
    return (-y * self.log() - (1 - y) * (1 - self).log())._reduce_loss(reduction)

  def binary_crossentropy_logits(self, y, reduction: str = "mean"):
    return (self.maximum(0) - y * self + (1 + (-self.abs()).exp()).log())._reduce_loss(reduction)

  def sparse_categorical_crossentropy(self, y, ignore_index: int = -1, label_smoothing: float = 0.0,
                                      reduction: str = "mean"):
    """Cross entropy of logits (..., classes) against integer labels y (...); labels equal to ignore_index count 0."""
    n_classes = self.shape[-1]
    log_probs = self.log_softmax(-1)
    valid = y != ignore_index
    target = (y.unsqueeze(-1) == type(self).arange(n_classes, device=self.device)).float()
    nll = -(log_probs * target).sum(-1)
    smooth = -log_probs.mean(-1)
    loss = (nll * (1 - label_smoothing) + smooth * label_smoothing) * valid.float()
    if reduction == "mean":
      return loss.sum() / valid.float().sum()
    return loss._reduce_loss(reduction)

  def cross_entropy(self, y, reduction: str = "mean", label_smoothing: float = 0.0):
    """torch-style cross entropy: logits (N, C, ...) and class indices (N, ...) or probabilities (N, C, ...)."""
    x = self if self.ndim > 1 else self.unsqueeze(0)
    y = y if self.ndim > 1 else y.unsqueeze(0)
    n_classes = x.shape[1]
    if y.ndim < x.ndim:
      y = y.one_hot(n_classes).float().permute(0, x.ndim - 1, *range(1, x.ndim - 1))
    y = y * (1 - label_smoothing) + label_smoothing / n_classes
    loss = -(x.log_softmax(1) * y).sum(1)
    return loss._reduce_loss(reduction) if self.ndim > 1 or reduction != "none" else loss.squeeze(0)

  def nll_loss(self, y, reduction: str = "mean"):
    picked = -(self * (y.unsqueeze(-1) == type(self).arange(self.shape[-1], device=self.device))).sum(-1)
    return picked._reduce_loss(reduction)

  # ---- resampling -----------------------------------------------------------------------------------------------
  def _take_axis(self, axis: int, index: np.ndarray):
    """x[..., index, ...] along one axis for a static integer index array (a one-hot contraction)."""
    n = self.shape[axis]
    onehot = (index.reshape(-1, 1) == np.arange(n).reshape(1, -1)).astype(np.float32)
    sel = type(self)(onehot, device=self.device).cast(self.dtype if self.dtype.is_float else dtypes.float32)
    moved = self.transpose(axis, -1)
    out = moved.cast(sel.dtype).dot(sel.T)
    return out.transpose(axis, -1).cast(self.dtype)

  def interpolate(self, size, mode: str = "linear", align_corners: bool = False):
    """Resizes the trailing len(size) axes; mode "nearest", "nearest-exact" or "linear" (bi/trilinear)."""
    if mode not in ("nearest", "nearest-exact", "linear"):
      raise ValueError(f"interpolate mode {mode!r}: use 'nearest', 'nearest-exact' or 'linear'")
    x = self
    for j, out_size in enumerate(size):
      axis = self.ndim - len(size) + j
      in_size = x.shape[axis]
      if mode == "linear":
        if align_corners and out_size > 1:
          pos = np.arange(out_size) * (in_size - 1) / (out_size - 1)
        else:
          pos = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, in_size - 1)
        w = (pos - lo).astype(np.float32)
        shape = [1] * x.ndim
        shape[axis] = out_size
        wt = type(self)(w.reshape(shape), device=self.device)
        x = x._take_axis(axis, lo) * (1 - wt) + x._take_axis(axis, hi) * wt
      else:
        scale = in_size / out_size
        offset = 0.5 if mode == "nearest-exact" else 0.0
        idx = np.minimum(np.floor((np.arange(out_size) + offset) * scale).astype(np.int64), in_size - 1)
        x = x._take_axis(axis, idx)
    return x

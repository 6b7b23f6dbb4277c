"""Neural-network ops of Tensor: activations, matmul/einsum, convolution and pooling, normalization, losses,
attention, interpolation. Each is composed from Tensor's primitive ops, so autograd covers them all.
"""
from __future__ import annotations

import math
import string

import numpy as np

from compiler.dtypes import dtypes, least_upper_dtype


def _pair(x, n: int = 2) -> tuple[int, ...]:
  return (x,) * n if isinstance(x, int) else tuple(x)


def _einsum_parse(formula: str, ranks: list[int]) -> tuple[list[str], str]:
  """Splits an einsum formula into per-operand letter strings and the output letters, with every '...' replaced
  by fresh letters (right-aligned, so operands with fewer batch axes broadcast) and an implicit output filled in."""
  formula = formula.replace(" ", "")
  lhs, arrow, rhs = formula.partition("->")
  inputs = lhs.split(",")
  if len(inputs) != len(ranks):
    raise ValueError(f"einsum {formula!r} names {len(inputs)} operands, {len(ranks)} given")
  unused = [c for c in string.ascii_letters if c not in formula]
  batch_ndim = max([r - len(spec) + 3 for spec, r in zip(inputs, ranks) if "..." in spec], default=0)
  batch = "".join(unused[:batch_ndim])
  specs = []
  for spec, rank in zip(inputs, ranks):
    if "..." in spec:
      n = rank - len(spec) + 3
      spec = spec.replace("...", batch[batch_ndim - n:] if n > 0 else "")
    if len(spec) != rank or not spec.isalpha():
      raise ValueError(f"einsum {formula!r}: operand {spec!r} does not fit a tensor of rank {rank}")
    specs.append(spec)
  if arrow:
    rhs = rhs.replace("...", batch)
  else:
    joined = "".join(specs)
    rhs = batch + "".join(sorted(c for c in set(joined) if joined.count(c) == 1 and c not in batch))
  if len(set(rhs)) != len(rhs) or any(c not in "".join(specs) for c in rhs):
    raise ValueError(f"einsum {formula!r}: output {rhs!r} repeats a letter or names one no operand has")
  return specs, rhs


def _einsum_diagonal(t, spec: str):
  """Collapses each letter repeated within one operand to its diagonal; returns the tensor and its letters."""
  while len(set(spec)) != len(spec):
    c = next(ch for ch in spec if spec.count(ch) > 1)
    i, j = spec.index(c), spec.index(c, spec.index(c) + 1)
    if t.shape[i] != t.shape[j]:
      raise ValueError(f"einsum: letter {c!r} repeats in {spec!r} over axes of sizes {t.shape[i]} and {t.shape[j]}")
    n = t.shape[i]
    rest = [k for k in range(len(spec)) if k not in (i, j)]
    lead = [t.shape[k] for k in rest]
    # the n*n block padded to rows of n + 1: element (a, 0) of row a is x[a, a]
    t = t.permute(rest + [i, j]).reshape(*lead, n * n)
    t = t.pad([(0, 0)] * len(lead) + [(0, n)]).reshape(*lead, n, n + 1)
    t = t.shrink([(0, s) for s in lead] + [(0, n), (0, 1)]).reshape(*lead, n)
    spec = "".join(spec[k] for k in rest) + c
  return t, spec


def _smoothed_nll(picked, log_probs, axis: int, label_smoothing: float):
  """-((1 - ls) * log p[target] + ls * mean(log p)): cross entropy against the target mixed with the uniform."""
  if not label_smoothing:
    return -picked
  return -(picked * (1 - label_smoothing) + log_probs.mean(axis) * label_smoothing)


class TensorNN:
  # ---- activations ------------------------------------------------------------------------------------------------
  def relu(self):
    # nan stays nan, as in torch.relu and numpy.maximum(x, 0); the gradient at 0 is 0
    return (self > 0).where(self, self.isnan().where(self, 0))

  def relu6(self):
    # a where, not relu(x) - relu(x - 6): that gives inf - inf = nan at x = inf
    return (self > 6).where(6, self.relu())

  def leaky_relu(self, neg_slope: float = 0.01):
    return (self > 0).where(self, self * neg_slope)

  def _nonpositive(self):
    """min(x, 0) through a where, so exp() of it never overflows and no inf meets a zero gradient (0 * inf = nan)."""
    return (self > 0).where(0, self)

  def elu(self, alpha: float = 1.0):
    return (self > 0).where(self, (self._nonpositive().exp() - 1) * alpha)

  def celu(self, alpha: float = 1.0):
    return (self > 0).where(self, ((self._nonpositive() / alpha).exp() - 1) * alpha)

  def selu(self, alpha: float = 1.67326, gamma: float = 1.0507):
    return self.elu(alpha) * gamma

  def sigmoid(self):
    # e = exp(-|x|) lies in (0, 1]: x >= 0 gives 1/(1+e), x < 0 gives e/(1+e). Neither branch overflows, so the
    # gradient stays finite for large |x| (1/(1+exp(-x)) sends 0 * inf = nan back through exp at x < -88).
    nonneg = self >= 0
    e = nonneg.where(-self, self).exp()
    return nonneg.where(1, e) / (1 + e)

  def logsigmoid(self):
    return -((-self).softplus())

  def hardsigmoid(self, alpha: float = 1 / 6, beta: float = 0.5):
    y = self * alpha + beta
    return (y > 1).where(1, y.relu())

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
    # log(1 + e^(bx))/b, computed stably as max(bx, 0) + log(1 + e^-|bx|); max and -|.| are wheres that pick one side
    # at bx == 0, so the gradient there is sigmoid(0) = 1/2 (maximum() would split the tie and give 0)
    bx = self * beta
    pos = bx > 0
    return (pos.where(bx, 0) + (1 + pos.where(-bx, bx).exp()).log()) * (1 / beta)

  def mish(self):
    return self * self.softplus().tanh()

  def softsign(self):
    return self / (1 + self.abs())

  def erf(self):
    """erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), as s * f(s * x) with s = +-1 (never 0), so the
    gradient at 0 is f'(0) ~ 2/sqrt(pi)."""
    x = self._to_float()
    s = (x < 0).where(-1, 1).cast(x.dtype)
    ax = x * s
    t = 1.0 / (1.0 + 0.3275911 * ax)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * (-(ax * ax)).exp())

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
    dt = least_upper_dtype(x.dtype, w.dtype)
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
    """Einstein summation over any number of operands: 'ij,jk->ik', implicit output when '->' is absent (the letters
    that appear once, sorted), '...' for broadcast batch axes, a repeated letter in one operand for a diagonal.

    Raises:
      ValueError: operand count or ranks do not match the formula, sizes of one letter differ, or the output names
        a letter twice or one no input has.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
      operands = tuple(operands[0])
    inputs, rhs = _einsum_parse(formula, [t.ndim for t in operands])
    sizes: dict[str, int] = {}
    diagonal = []
    for spec, t in zip(inputs, operands):
      for c, n in zip(spec, t.shape):
        if sizes.get(c, n) != n and n != 1 and sizes[c] != 1:
          raise ValueError(f"einsum {formula!r}: letter {c!r} has sizes {sizes[c]} and {n}")
        sizes[c] = max(sizes.get(c, n), n)
      diagonal.append(_einsum_diagonal(t, spec))
    order = list(rhs) + sorted(c for c in sizes if c not in rhs)
    product = None
    for t, spec in diagonal:
      # move the operand's axes into `order`, then give it a size-1 axis for every letter it lacks
      perm = sorted(range(len(spec)), key=lambda i: order.index(spec[i]))
      t = t.permute(perm) if perm else t
      present = {spec[i]: t.shape[j] for j, i in enumerate(perm)}
      t = t.reshape([present.get(c, 1) for c in order])
      product = t if product is None else product * t
    full = tuple(sizes[c] for c in order)
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
      ValueError: ranks, channel counts and groups disagree (the shapes are named).
    """
    if weight.ndim < 3 or self.ndim != weight.ndim:
      raise ValueError(f"conv2d: input {self.shape} and weight {weight.shape} need the same rank, at least 3: "
                       f"(N, Cin, *spatial) and (Cout, Cin/groups, *kernel)")
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
    # the weight laid out output-channel-last (one small copy): along Cout the weight is then contiguous and the
    # input is broadcast, so the reduction vectorizes over output channels
    w = weight.permute(*range(1, 2 + nd), 0).contiguous().permute(nd + 1, *range(nd + 1))
    w = w.reshape(1, groups, cout // groups, *([1] * nd), cin_g, *k_)
    out = (x * w).sum(tuple(range(3 + nd, 4 + 2 * nd)))
    out = out.reshape(n, cout, *o_)
    return out if bias is None else out + bias.reshape(1, -1, *([1] * nd))

  def conv_transpose2d(self, weight, bias=None, groups: int = 1, stride=1, dilation=1, padding=0,
                       output_padding=0):
    """Transposed convolution of (N, Cin, *spatial) with weight (Cin, Cout/groups, *kernel), as the gradient of conv2d.

    Raises:
      ValueError: ranks, channel counts and groups disagree (the shapes are named).
    """
    if weight.ndim < 3 or self.ndim != weight.ndim or self.shape[1] != weight.shape[0] or weight.shape[0] % groups:
      raise ValueError(f"conv_transpose2d: input {self.shape} and weight {weight.shape} do not fit groups={groups} "
                       f"(need the same rank, Cin == weight.shape[0] and Cin % groups == 0)")
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

  def _pool_pads(self, k_: tuple[int, ...], stride, dilation, padding, ceil_mode: bool):
    """Strides and (before, after) pads of the pooled axes, plus the extra after-padding of ceil_mode, which keeps a
    last partial window when it starts inside the input or its before-padding (torch's rule)."""
    nd = len(k_)
    s_ = k_ if stride is None else _pair(stride, nd)
    d_ = _pair(dilation, nd)
    pads = self._padding_pairs(padding, nd)
    extra = [0] * nd
    if ceil_mode:
      for j, (i, k, s, d, (pb, pa)) in enumerate(zip(self.shape[-nd:], k_, s_, d_, pads)):
        last = i + pb + pa - d * (k - 1) - 1  # the last start a full window allows
        o = -(-last // s) + 1
        if (o - 1) * s >= i + pb:
          o -= 1
        extra[j] = max(0, (o - 1) * s + d * (k - 1) + 1 - (i + pb + pa))
    return s_, pads, extra

  def max_pool2d(self, kernel_size=(2, 2), stride=None, dilation=1, padding=0, ceil_mode: bool = False):
    """Max over windows of the trailing len(kernel_size) axes; padding is int, per axis, or torch-style flat."""
    k_ = _pair(kernel_size)
    s_, pads, extra = self._pool_pads(k_, stride, dilation, padding, ceil_mode)
    full = [(pb, pa + e) for (pb, pa), e in zip(pads, extra)]
    fill = float("-inf") if self.dtype.is_float else dtypes.min(self.dtype)
    x = self.pad([(0, 0)] * (self.ndim - len(k_)) + full, value=fill) if any(sum(p) for p in full) else self
    return x._pool(k_, s_, dilation).max(tuple(range(-len(k_), 0)))

  def avg_pool2d(self, kernel_size=(2, 2), stride=None, dilation=1, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True):
    """Mean over windows; the divisor counts padding cells when count_include_pad, never ceil_mode's extra cells."""
    k_ = _pair(kernel_size)
    nd = len(k_)
    axes = tuple(range(-nd, 0))
    s_, pads, extra = self._pool_pads(k_, stride, dilation, padding, ceil_mode)
    full = [(pb, pa + e) for (pb, pa), e in zip(pads, extra)]
    windows = self.pad([(0, 0)] * (self.ndim - nd) + full)._pool(k_, s_, dilation)
    if count_include_pad and not any(extra):
      return windows.mean(axes)
    spatial = self.shape[-nd:]
    if count_include_pad:
      cells = type(self).ones(*[i + pb + pa for i, (pb, pa) in zip(spatial, pads)], device=self.device)
      cells = cells.pad([(0, e) for e in extra])
    else:
      cells = type(self).ones(*spatial, device=self.device).pad(full)
    count = cells._pool(k_, s_, dilation).sum(axes)
    sums = windows.sum(axes)
    return sums / (count.cast(sums.dtype) if sums.dtype.is_float else count)

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

  def binary_crossentropy_logits(self, y, reduction: str = "mean", pos_weight=None):
    """Binary cross entropy of logits: (1 - y) x + (1 + (pos_weight - 1) y) softplus(-x), as torch computes it."""
    positive = 1 if pos_weight is None else 1 + (pos_weight - 1) * y
    return ((1 - y) * self + positive * (-self).softplus())._reduce_loss(reduction)

  def sparse_categorical_crossentropy(self, y, ignore_index: int = -1, label_smoothing: float = 0.0,
                                      reduction: str = "mean"):
    """Cross entropy of logits (..., classes) against integer labels y (...); labels equal to ignore_index count 0
    and leave the mean's denominator."""
    log_probs = self.log_softmax(-1)
    hit = y.unsqueeze(-1) == type(self).arange(self.shape[-1], device=self.device)
    loss = _smoothed_nll(hit.where(log_probs, 0).sum(-1), log_probs, -1, label_smoothing)
    valid = y != ignore_index
    loss = valid.where(loss, 0)
    if reduction == "mean":
      return loss.sum() / valid.sum().cast(loss.dtype)
    return loss._reduce_loss(reduction)

  def cross_entropy(self, y, reduction: str = "mean", label_smoothing: float = 0.0):
    """torch-style cross entropy: logits (N, C, ...) or (C,), and class indices (N, ...) or () or probabilities of the
    logits' shape; label_smoothing mixes the target with the uniform distribution."""
    x = self if self.ndim > 1 else self.unsqueeze(0)
    y = y if self.ndim > 1 else y.unsqueeze(0)
    log_probs = x.log_softmax(1)
    if y.ndim < x.ndim:  # class indices: pick with a where, so -inf log-probabilities of other classes stay out
      classes = type(self).arange(x.shape[1], device=self.device).reshape(1, -1, *[1] * (x.ndim - 2))
      picked = (y.unsqueeze(1) == classes).where(log_probs, 0).sum(1)
    else:
      picked = (log_probs * y.cast(log_probs.dtype)).sum(1)
    loss = _smoothed_nll(picked, log_probs, 1, label_smoothing)
    return loss._reduce_loss(reduction) if self.ndim > 1 or reduction != "none" else loss.squeeze(0)

  def nll_loss(self, y, weight=None, ignore_index: int | None = None, reduction: str = "mean"):
    """torch's nll_loss: log-probabilities (N, C, ...) or (C,), class indices (N, ...) or (); weight (C,) rescales each
    class; targets equal to ignore_index count 0 and leave the mean's denominator (the sum of the used weights)."""
    x = self if self.ndim > 1 else self.unsqueeze(0)
    y = y if self.ndim > 1 else y.reshape(1)
    class_shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    onehot = y.unsqueeze(1) == type(self).arange(x.shape[1], device=self.device).reshape(class_shape)
    w = type(self).ones(*class_shape, device=self.device, dtype=x.dtype) if weight is None else \
      weight.reshape(class_shape)
    picked_w = onehot.where(w, 0).sum(1)
    nll = -onehot.where(x * w, 0).sum(1)
    if ignore_index is not None:
      valid = y != ignore_index
      picked_w, nll = valid.where(picked_w, 0), valid.where(nll, 0)
    if reduction == "mean":
      return nll.sum() / picked_w.sum()
    out = nll._reduce_loss(reduction)
    return out.squeeze(0) if self.ndim == 1 and reduction == "none" else out

  # ---- resampling -----------------------------------------------------------------------------------------------
  def _resample_axis(self, axis: int, matrix: np.ndarray):
    """out[..., o, ...] = sum_i matrix[o, i] * x[..., i, ...] along one axis, for a static (out, in) matrix."""
    dt = self.dtype if self.dtype.is_float else dtypes.float32
    weights = type(self)(matrix.astype(np.float32), device=self.device).cast(dt)
    moved = self.transpose(axis, -1).cast(dt)
    return moved.dot(weights.T).transpose(axis, -1).cast(self.dtype)

  def interpolate(self, size, mode: str = "linear", align_corners: bool = False):
    """Resizes the trailing len(size) axes as torch.nn.functional.interpolate with a size does; mode "nearest",
    "nearest-exact" or "linear" (bi-/trilinear over several axes), one axis after another.

    Raises:
      ValueError: an unknown mode.
    """
    if mode not in ("nearest", "nearest-exact", "linear"):
      raise ValueError(f"interpolate mode {mode!r}: use 'nearest', 'nearest-exact' or 'linear'")
    x = self
    for j, out_size in enumerate(size):
      axis = self.ndim - len(size) + j
      in_size = x.shape[axis]
      matrix = np.zeros((out_size, in_size), np.float64)
      rows = np.arange(out_size)
      if mode == "linear":
        if align_corners:
          pos = rows * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
        else:
          pos = np.clip((rows + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, in_size - 1)
        np.add.at(matrix, (rows, lo), 1 - (pos - lo))
        np.add.at(matrix, (rows, hi), pos - lo)
      else:
        offset = 0.5 if mode == "nearest-exact" else 0.0
        src = np.minimum(np.floor((rows + offset) * (in_size / out_size)).astype(np.int64), in_size - 1)
        matrix[rows, src] = 1.0
      x = x._resample_axis(axis, matrix)
    return x

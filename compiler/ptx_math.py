"""Float64 exp2, log2 and sin as PTX instruction sequences (PTX has no float64 transcendentals).

The PTX renderer uses these for float64, and for log2 and sin of every float type (lg2.approx.f32 has an absolute
error of about 2^-22 near x = 1, and sin.approx.f32 an absolute error near 2^-21 that grows with |x|: neither is
within a few ulp of the C renderer's libm results). Each function takes a renderer-like emitter (`new(cls)`
allocates a register of class "p", "r", "rd" or "fd"; `emit(line)` appends one instruction; `label()` names a
fresh label and `label_here(name)` places it; `globals` maps a module-scope symbol to its declaration) and the
register of the argument, and returns the register of the result.

Accuracy (polynomial truncation below 2^-56 relative; the rest is rounding in fma Horner steps):
  - exp2: 2^x = 2^n * 2^f, n = round(x), f in [-0.5, 0.5]; 2^f by its degree-13 Taylor polynomial in f. About 1 ulp;
    results down to 2^-1074 (subnormal) and overflow to inf are produced through a two-step scaling.
  - log2: x = m * 2^e with m in [sqrt(1/2), sqrt(2)]; ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716, by 11
    odd-power terms. Within 3 ulp, including near x = 1.
  - sin: x reduced by k = round(x * 2/pi) with a three-part pi/2 (Cody-Waite, fma) for |x| < 2^19, and from 192
    bits of a 1216-bit table of 2/pi (Payne-Hanek; a branch that only large arguments take) above; Taylor
    polynomials for sin and cos on [-pi/4, pi/4]. About 1 ulp over the whole float64 range.
"""
from __future__ import annotations

import decimal
import math
import struct

_ctx = decimal.Context(prec=60)
_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510582097494459")
_LN2 = _ctx.ln(decimal.Decimal(2))

EXP2_COEFFS = [float(_ctx.divide(_ctx.power(_LN2, k), math.factorial(k))) for k in range(14)]  # ln2^k / k!
ATANH_COEFFS = [1.0 / (2 * k + 1) for k in range(11)]  # atanh(s)/s = sum z^k / (2k+1), z = s^2
SIN_COEFFS = [(-1) ** (k + 1) / math.factorial(2 * k + 3) for k in range(8)]  # sin r = r + r z S(z)
COS_COEFFS = [(-1) ** k / math.factorial(2 * k + 4) for k in range(8)]  # cos r = 1 - z/2 + z^2 C(z)
_PIO2 = _PI / 2
PIO2_1 = float(_PIO2)
PIO2_2 = float(_PIO2 - decimal.Decimal(PIO2_1))
PIO2_3 = float(_PIO2 - decimal.Decimal(PIO2_1) - decimal.Decimal(PIO2_2))
TWO_OVER_PI = float(2 / _PI)
LOG2_E = float(1 / _LN2)


def f64(value: float) -> str:
  """A PTX float64 immediate (exact bits: 0d + 16 hex digits)."""
  return "0d" + struct.pack(">d", value).hex().upper()


def _horner(r, x: str, coeffs: list[float]) -> str:
  """sum coeffs[k] * x^k, highest power first, one fma per step."""
  acc = r.new("fd")
  r.emit(f"mov.f64 {acc}, {f64(coeffs[-1])};")
  for c in reversed(coeffs[:-1]):
    nxt = r.new("fd")
    r.emit(f"fma.rn.f64 {nxt}, {acc}, {x}, {f64(c)};")
    acc = nxt
  return acc


def _pow2(r, n: str) -> str:
  """2^n as a float64 for an int32 n in [-1022, 1023], built from its exponent bits."""
  biased, wide, bits = r.new("r"), r.new("rd"), r.new("rd")
  out = r.new("fd")
  r.emit(f"add.s32 {biased}, {n}, 1023;")
  r.emit(f"cvt.u64.u32 {wide}, {biased};")
  r.emit(f"shl.b64 {bits}, {wide}, 52;")
  r.emit(f"mov.b64 {out}, {bits};")
  return out


def exp2_f64(r, x: str) -> str:
  lo, xc, n, f = r.new("fd"), r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"min.f64 {lo}, {x}, {f64(1100.0)};")
  r.emit(f"max.f64 {xc}, {lo}, {f64(-1100.0)};")  # NaN becomes a bound here; it is put back at the end
  r.emit(f"cvt.rni.f64.f64 {n}, {xc};")
  r.emit(f"sub.f64 {f}, {xc}, {n};")
  poly = _horner(r, f, EXP2_COEFFS)
  ni, n1, n2 = r.new("r"), r.new("r"), r.new("r")
  r.emit(f"cvt.rzi.s32.f64 {ni}, {n};")
  r.emit(f"shr.s32 {n1}, {ni}, 1;")
  r.emit(f"sub.s32 {n2}, {ni}, {n1};")  # two halves, each a normal power of two, so subnormal results round once
  half, out, isnan, res = r.new("fd"), r.new("fd"), r.new("p"), r.new("fd")
  r.emit(f"mul.rn.f64 {half}, {poly}, {_pow2(r, n1)};")
  r.emit(f"mul.rn.f64 {out}, {half}, {_pow2(r, n2)};")
  r.emit(f"setp.nan.f64 {isnan}, {x}, {x};")
  r.emit(f"selp.f64 {res}, {x}, {out}, {isnan};")
  return res


def log2_f64(r, x: str) -> str:
  tiny, xs, xn = r.new("p"), r.new("fd"), r.new("fd")
  r.emit(f"setp.lt.f64 {tiny}, {x}, {f64(2.0 ** -1022)};")
  r.emit(f"mul.rn.f64 {xs}, {x}, {f64(2.0 ** 54)};")  # subnormals scaled into the normal range
  r.emit(f"selp.f64 {xn}, {xs}, {x}, {tiny};")
  bits, top, e32, ebias, eadj, e = r.new("rd"), r.new("rd"), r.new("r"), r.new("r"), r.new("r"), r.new("r")
  r.emit(f"mov.b64 {bits}, {xn};")
  r.emit(f"shr.u64 {top}, {bits}, 52;")
  r.emit(f"cvt.u32.u64 {e32}, {top};")
  r.emit(f"and.b32 {ebias}, {e32}, 2047;")
  r.emit(f"selp.s32 {eadj}, -1077, -1023, {tiny};")
  r.emit(f"add.s32 {e}, {ebias}, {eadj};")
  mbits, mbits1, m = r.new("rd"), r.new("rd"), r.new("fd")
  r.emit(f"and.b64 {mbits}, {bits}, 0x000FFFFFFFFFFFFF;")
  r.emit(f"or.b64 {mbits1}, {mbits}, 0x3FF0000000000000;")
  r.emit(f"mov.b64 {m}, {mbits1};")  # m in [1, 2)
  big, mh, mr, e1, er = r.new("p"), r.new("fd"), r.new("fd"), r.new("r"), r.new("r")
  r.emit(f"setp.gt.f64 {big}, {m}, {f64(math.sqrt(2.0))};")
  r.emit(f"mul.rn.f64 {mh}, {m}, {f64(0.5)};")
  r.emit(f"selp.f64 {mr}, {mh}, {m}, {big};")
  r.emit(f"add.s32 {e1}, {e}, 1;")
  r.emit(f"selp.s32 {er}, {e1}, {e}, {big};")
  num, den, s, z = r.new("fd"), r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"sub.rn.f64 {num}, {mr}, {f64(1.0)};")  # exact (Sterbenz)
  r.emit(f"add.rn.f64 {den}, {mr}, {f64(1.0)};")
  r.emit(f"div.rn.f64 {s}, {num}, {den};")
  r.emit(f"mul.rn.f64 {z}, {s}, {s};")
  poly = _horner(r, z, ATANH_COEFFS)
  ln_half, ln, ef, out = r.new("fd"), r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"mul.rn.f64 {ln_half}, {s}, {poly};")
  r.emit(f"add.rn.f64 {ln}, {ln_half}, {ln_half};")
  r.emit(f"cvt.rn.f64.s32 {ef}, {er};")
  r.emit(f"fma.rn.f64 {out}, {ln}, {f64(LOG2_E)}, {ef};")
  # special values: log2(+-0) = -inf, log2(x < 0) = NaN, log2(inf) = inf, NaN passes
  cases = [("eq", f64(0.0), f64(-math.inf)), ("lt", f64(0.0), f64(math.nan)), ("eq", f64(math.inf), f64(math.inf))]
  for cmp, rhs, value in cases:
    p, nxt = r.new("p"), r.new("fd")
    r.emit(f"setp.{cmp}.f64 {p}, {x}, {rhs};")
    r.emit(f"selp.f64 {nxt}, {value}, {out}, {p};")
    out = nxt
  isnan, res = r.new("p"), r.new("fd")
  r.emit(f"setp.nan.f64 {isnan}, {x}, {x};")
  r.emit(f"selp.f64 {res}, {x}, {out}, {isnan};")
  return res


def _two_over_pi_words() -> list[int]:
  """2/pi as TABLE_WORDS big-endian 64-bit words: 64 zero bits, then bits 1.. of 2/pi (bit i weighs 2^-i)."""
  prec = 64 * TABLE_WORDS + 64
  one = 1 << prec

  def atan_inv(n: int) -> int:  # atan(1/n) in fixed point, by its Taylor series
    total, term, k = 0, one // n, 1
    while term:
      total += term // k if k % 4 == 1 else -(term // k)
      term //= n * n
      k += 2
    return total
  pi = 16 * atan_inv(5) - 4 * atan_inv(239)  # Machin's formula, pi * 2^prec
  bits = 64 * TABLE_WORDS - 64
  table = (2 << (prec + bits)) // pi  # floor(2/pi * 2^bits): below 2^bits, so the top word is zero
  return [(table >> (64 * (TABLE_WORDS - 1 - w))) & (2**64 - 1) for w in range(TABLE_WORDS)]


TABLE_WORDS = 20  # covers every finite float64: the window for exponent 2^971 ends at word 19
TWO_OVER_PI_WORDS = _two_over_pi_words()
TABLE_NAME = "sov_two_over_pi"
PAYNE_HANEK_FROM = 2.0 ** 19  # the three-part reduction stays within 1 ulp below this


def _shifted_word(r, table: str, word: str, shift: str, k: int) -> str:
  """64 bits of the table starting `shift` bits into word `word + k` (shr by 64 gives 0 for shift 0)."""
  addr, hi, lo, a, b, out = (r.new("rd") for _ in range(6))
  r.emit(f"mad.wide.u32 {addr}, {word}, 8, {table};")
  r.emit(f"ld.const.u64 {hi}, [{addr}+{8 * k}];")
  r.emit(f"ld.const.u64 {lo}, [{addr}+{8 * k + 8}];")
  r.emit(f"shl.b64 {a}, {hi}, {shift};")
  inverse = r.new("r")
  r.emit(f"sub.s32 {inverse}, 64, {shift};")
  r.emit(f"shr.b64 {b}, {lo}, {inverse};")
  r.emit(f"or.b64 {out}, {a}, {b};")
  return out


def _payne_hanek(r, x: str, red: str, quadrant: str) -> None:
  """Overwrites red and quadrant with the reduction of a large finite x: |x| * 2/pi mod 4 from the 192 bits of 2/pi
  that matter for x's exponent (Payne and Hanek), as a 2-bit quadrant and a 128-bit signed fraction."""
  if TABLE_NAME not in r.globals:
    words = ", ".join(f"0x{w:016X}" for w in TWO_OVER_PI_WORDS)
    # in the constant space: ptxas places it in a constant bank, which a loader binds without relocations
    r.globals[TABLE_NAME] = f".const .align 8 .b64 {TABLE_NAME}[{TABLE_WORDS}] = {{{words}}};"
  bits, top, e, mant, m = r.new("rd"), r.new("rd"), r.new("r"), r.new("rd"), r.new("rd")
  r.emit(f"mov.b64 {bits}, {x};")
  r.emit(f"shr.u64 {top}, {bits}, 52;")
  r.emit(f"cvt.u32.u64 {e}, {top};")
  r.emit(f"and.b32 {e}, {e}, 2047;")  # |x| = M * 2^(e - 1075), M the 53-bit integer mantissa
  r.emit(f"and.b64 {mant}, {bits}, 0x000FFFFFFFFFFFFF;")
  r.emit(f"or.b64 {m}, {mant}, 0x0010000000000000;")
  # bits i <= e-1077 of 2/pi add multiples of 4 to |x|*2/pi; the window starts at table bit (e-1077) + 64
  start, word, shift, table = r.new("r"), r.new("r"), r.new("r"), r.new("rd")
  r.emit(f"sub.s32 {start}, {e}, 1013;")
  r.emit(f"shr.u32 {word}, {start}, 6;")
  r.emit(f"and.b32 {shift}, {start}, 63;")
  r.emit(f"mov.u64 {table}, {TABLE_NAME};")
  w0, w1, w2 = (_shifted_word(r, table, word, shift, k) for k in range(3))
  # P = M * (w0 w1 w2) mod 2^192; quadrant = bits 190..191, fraction = bits 62..189
  lo0, lo1, hi1, lo2, hi2 = (r.new("rd") for _ in range(5))
  r.emit(f"mul.lo.u64 {lo0}, {m}, {w0};")
  r.emit(f"mul.lo.u64 {lo1}, {m}, {w1};")
  r.emit(f"mul.hi.u64 {hi1}, {m}, {w1};")
  r.emit(f"mul.lo.u64 {lo2}, {m}, {w2};")
  r.emit(f"mul.hi.u64 {hi2}, {m}, {w2};")
  limb1, c64, limb2a, limb2 = (r.new("rd") for _ in range(4))
  wrapped = r.new("p")
  r.emit(f"add.s64 {limb1}, {hi2}, {lo1};")
  r.emit(f"setp.lt.u64 {wrapped}, {limb1}, {hi2};")
  r.emit(f"selp.u64 {c64}, 1, 0, {wrapped};")
  r.emit(f"add.s64 {limb2a}, {hi1}, {lo0};")
  r.emit(f"add.s64 {limb2}, {limb2a}, {c64};")
  fhi_a, fhi_b, fhi, flo_a, flo_b, flo = (r.new("rd") for _ in range(6))
  r.emit(f"shl.b64 {fhi_a}, {limb2}, 2;")
  r.emit(f"shr.u64 {fhi_b}, {limb1}, 62;")
  r.emit(f"or.b64 {fhi}, {fhi_a}, {fhi_b};")
  r.emit(f"shl.b64 {flo_a}, {limb1}, 2;")
  r.emit(f"shr.u64 {flo_b}, {lo2}, 62;")
  r.emit(f"or.b64 {flo}, {flo_a}, {flo_b};")
  # the fraction read as signed rounds to the nearest quadrant: f >= 1/2 becomes f - 1 with the quadrant + 1
  q_top, q_round, q64, q32 = r.new("rd"), r.new("rd"), r.new("rd"), r.new("r")
  r.emit(f"shr.u64 {q_top}, {limb2}, 62;")
  r.emit(f"shr.u64 {q_round}, {fhi}, 63;")
  r.emit(f"add.s64 {q64}, {q_top}, {q_round};")
  r.emit(f"cvt.u32.u64 {q32}, {q64};")
  hi_f, lo_f, frac, scaled = r.new("fd"), r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"cvt.rn.f64.s64 {hi_f}, {fhi};")
  r.emit(f"cvt.rn.f64.u64 {lo_f}, {flo};")
  r.emit(f"fma.rn.f64 {frac}, {lo_f}, {f64(2.0 ** -64)}, {hi_f};")
  r.emit(f"mul.rn.f64 {scaled}, {frac}, {f64(2.0 ** -64)};")
  neg, red_pos, red_neg, q_neg = r.new("p"), r.new("fd"), r.new("fd"), r.new("r")
  r.emit(f"mul.rn.f64 {red_pos}, {scaled}, {f64(PIO2_1)};")
  r.emit(f"setp.lt.f64 {neg}, {x}, {f64(0.0)};")  # sin(-x) = -sin(x): quadrant -q, remainder -r
  r.emit(f"neg.f64 {red_neg}, {red_pos};")
  r.emit(f"neg.s32 {q_neg}, {q32};")
  r.emit(f"selp.f64 {red}, {red_neg}, {red_pos}, {neg};")
  r.emit(f"selp.b32 {quadrant}, {q_neg}, {q32}, {neg};")


def sin_f64(r, x: str) -> str:
  t, k, nk = r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"mul.rn.f64 {t}, {x}, {f64(TWO_OVER_PI)};")
  r.emit(f"cvt.rni.f64.f64 {k}, {t};")
  r.emit(f"neg.f64 {nk}, {k};")
  red = x
  for part in (PIO2_1, PIO2_2, PIO2_3):  # r = x - k*pi/2, pi/2 in three parts (inf and NaN become NaN here)
    nxt = r.new("fd")
    r.emit(f"fma.rn.f64 {nxt}, {nk}, {f64(part)}, {red};")
    red = nxt
  ki, q = r.new("rd"), r.new("r")
  r.emit(f"cvt.rzi.s64.f64 {ki}, {k};")
  r.emit(f"cvt.u32.u64 {q}, {ki};")
  ax, small, skip = r.new("fd"), r.new("p"), r.label()
  r.emit(f"abs.f64 {ax}, {x};")
  r.emit(f"setp.ltu.f64 {small}, {ax}, {f64(PAYNE_HANEK_FROM)};")  # below the bound, or NaN
  inf = r.new("p")
  r.emit(f"setp.eq.f64 {inf}, {ax}, {f64(math.inf)};")
  r.emit(f"or.pred {small}, {small}, {inf};")
  r.emit(f"@{small} bra {skip};")
  _payne_hanek(r, x, red, q)
  r.label_here(skip)
  z, sin_t, sin_r = r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"mul.rn.f64 {z}, {red}, {red};")
  r.emit(f"mul.rn.f64 {sin_t}, {z}, {_horner(r, z, SIN_COEFFS)};")
  r.emit(f"fma.rn.f64 {sin_r}, {red}, {sin_t}, {red};")
  z2, cos_head, cos_r = r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"mul.rn.f64 {z2}, {z}, {z};")
  r.emit(f"fma.rn.f64 {cos_head}, {z}, {f64(-0.5)}, {f64(1.0)};")
  r.emit(f"fma.rn.f64 {cos_r}, {z2}, {_horner(r, z, COS_COEFFS)}, {cos_head};")
  odd, neg, q1, q2 = r.new("p"), r.new("p"), r.new("r"), r.new("r")
  r.emit(f"and.b32 {q1}, {q}, 1;")
  r.emit(f"and.b32 {q2}, {q}, 2;")
  r.emit(f"setp.ne.u32 {odd}, {q1}, 0;")
  r.emit(f"setp.ne.u32 {neg}, {q2}, 0;")
  quad, negated, res = r.new("fd"), r.new("fd"), r.new("fd")
  r.emit(f"selp.f64 {quad}, {cos_r}, {sin_r}, {odd};")  # quadrants: sin, cos, -sin, -cos
  r.emit(f"neg.f64 {negated}, {quad};")
  r.emit(f"selp.f64 {res}, {negated}, {quad}, {neg};")
  return res

"""The simulated device's stand-in OpenCL compiler: OpenCL C -> a qcomdrv kernel binary whose "code" the simulated
command processor can run (by compiling the OpenCL C for the host CPU; qcomdrv.sim.executor).

It does what the device's compiler would do for the driver's purposes, from the kernel's source:
  - finds `__kernel [__attribute__((reqd_work_group_size(X, Y, Z)))] void NAME(params)` and its parameters:
    `__global` pointers become ARG_BUFFER arguments (a 64-bit GPU address), other parameters ARG_SCALAR;
  - lays the arguments out in the constant file, one vec4 each (argument k at dword 4k), CONSTLEN = the vec4s used
    rounded up to a multiple of 4;
  - sums the `__local` arrays into the shared memory size;
  - reports a register footprint it does not allocate: 2 + one vec4 per 8 declared variables (capped at 48), so the
    driver has a number to program and check;
  - picks the sysval registers: work-group id in r60.x (regid 0xf0), local id in r0.x (regid 0), the rest unused.

Code layout (what the simulated CP fetches from SP_CS_OBJ_START; the code section of the container):

  offset  type     field
  0       char[8]  magic "SIMQCODE"
  8       u32      M, bytes of metadata
  12      u32      S, bytes of source
  16      M bytes  metadata, JSON: name, params [{name, type, kind, const_dword, nbytes}], full_regs, half_regs,
                   constlen, shared_bytes, threadsize, sysvals, local_size, barrier (whether the source calls it)
  16 + M  S bytes  the OpenCL C source
  ...              zero padding to instrlen * 128 bytes

The metadata repeats what the container's header tells the driver: the simulated CP checks the state the driver
programmed against it, as hardware would misbehave if the driver programmed something else.
"""
from __future__ import annotations

import json
import re
import struct

from qcomdrv import binary as kb

CODE_MAGIC = b"SIMQCODE"
CODE_HEADER = struct.Struct("<8sII")
WGID_REGID = kb.regid(60, 0)
LOCALID_REGID = kb.regid(0, 0)
SCALAR_BYTES = {"bool": 1, "char": 1, "uchar": 1, "short": 2, "ushort": 2, "half": 2, "int": 4, "uint": 4,
                "float": 4, "long": 8, "ulong": 8, "double": 8, "size_t": 8}
QUALIFIERS = {"__global", "global", "const", "__const", "restrict", "__restrict", "volatile", "__constant",
              "constant", "__private", "private"}
KERNEL = re.compile(r"(?:__kernel|\bkernel)\s+(?:__attribute__\s*\(\((?P<attr>.*?)\)\)\s*)?void\s+(?P<name>\w+)\s*"
                    r"\((?P<params>[^)]*)\)\s*\{", re.S)
REQD = re.compile(r"reqd_work_group_size\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")
LOCAL_ARRAY = re.compile(r"(?:__local|\blocal)\s+(\w+(?:\s+\w+)?)\s+\w+\s*\[\s*(\d+)\s*\]")
DECLARATION = re.compile(r"\b(?:bool|char|uchar|short|ushort|half|int|uint|long|ulong|float|double)\s+\w+\s*=")


class SimCompileError(Exception):
  """The stand-in could not read the kernel (no such __kernel, or a parameter it does not understand)."""


def parse_param(text: str) -> dict:
  tokens = text.replace("*", " * ").split()
  pointer = "*" in tokens
  words = [t for t in tokens if t not in QUALIFIERS and t != "*"]
  if len(words) < 2:
    raise SimCompileError(f"cannot read kernel parameter {text.strip()!r}")
  name, kind = words[-1], " ".join(words[:-1])
  if not pointer and kind not in SCALAR_BYTES:
    raise SimCompileError(f"kernel parameter {text.strip()!r}: scalar type {kind!r} unknown to the stand-in "
                          f"(known: {', '.join(SCALAR_BYTES)})")
  return {"name": name, "type": kind, "kind": "buffer" if pointer else "scalar",
          "nbytes": 8 if pointer else max(4, SCALAR_BYTES[kind])}


def compile_kernel(source: str, name: str) -> bytes:
  """A qcomdrv kernel binary (qcomdrv.binary) for kernel `name` of the OpenCL C `source`.

  Raises:
    SimCompileError: no `__kernel void name(...)` in the source, or a parameter the stand-in cannot read.
  """
  match = next((m for m in KERNEL.finditer(source) if m.group("name") == name), None)
  if match is None:
    raise SimCompileError(f"no `__kernel void {name}(...)` in the source")
  params = [parse_param(p) for p in match.group("params").split(",") if p.strip()]
  for k, param in enumerate(params):
    param["const_dword"] = 4 * k
  reqd = REQD.search(match.group("attr") or "")
  local_size = tuple(int(v) for v in reqd.groups()) if reqd else (0, 0, 0)
  shared = sum(int(count) * SCALAR_BYTES.get(kind.split()[-1], 4) for kind, count in LOCAL_ARRAY.findall(source))
  full_regs = min(48, 2 + len(DECLARATION.findall(source)) // 8)
  constlen = max(4, -(-len(params) // 4) * 4)
  sysvals = (WGID_REGID, kb.REGID_UNUSED, kb.REGID_UNUSED, LOCALID_REGID, kb.REGID_UNUSED)
  meta = {"name": name, "params": params, "full_regs": full_regs, "half_regs": 0, "constlen": constlen,
          "shared_bytes": shared, "threadsize": 0, "sysvals": list(sysvals), "local_size": list(local_size),
          "barrier": "barrier(" in source}
  meta_bytes = json.dumps(meta, sort_keys=True).encode()
  src_bytes = source.encode()
  code = CODE_HEADER.pack(CODE_MAGIC, len(meta_bytes), len(src_bytes)) + meta_bytes + src_bytes
  instrlen = -(-len(code) // kb.CODE_ALIGN)
  args = tuple(kb.KernelArg(kb.ARG_BUFFER if p["kind"] == "buffer" else kb.ARG_SCALAR, p["nbytes"],
                            p["const_dword"]) for p in params)
  return kb.KernelBinary(name, code, instrlen, full_regs, 0, constlen, 0, shared, 0, sysvals, local_size,
                         args).pack()


def parse_code(code: bytes) -> tuple[dict, str]:
  """(metadata, OpenCL C source) of stand-in code as fetched by the simulated CP.

  Raises:
    ValueError: the bytes are not stand-in code (the CP would execute garbage: an illegal instruction).
  """
  if len(code) < CODE_HEADER.size or code[:8] != CODE_MAGIC:
    raise ValueError(f"the instructions at SP_CS_OBJ_START start {bytes(code[:8])!r}, not the stand-in compiler's "
                     f"{CODE_MAGIC!r}: illegal instruction")
  _, meta_len, src_len = CODE_HEADER.unpack_from(code)
  end = CODE_HEADER.size + meta_len + src_len
  if end > len(code):
    raise ValueError(f"the shader is {end} bytes but only {len(code)} were fetched (SP_CS_INSTRLEN too small)")
  meta = json.loads(code[CODE_HEADER.size:CODE_HEADER.size + meta_len])
  source = bytes(code[CODE_HEADER.size + meta_len:end]).decode()
  return meta, source


class SimOpenCLCompiler:
  """What the simulated OS interface returns for `opencl_compiler()`."""

  def compile(self, source: str, name: str) -> bytes:
    return compile_kernel(source, name)

"""qcomdrv's kernel binary container: a compiled compute kernel's code plus what the driver needs to dispatch it.

A compiler (the device's, through the seam in qcomdrv.compile; the simulator's stand-in in qcomdrv.sim.compiler)
hands the driver one of these; the driver copies the code into a GPU object, writes the program state from the header
and fills the constant file from the argument table. Layout (little-endian, offsets in bytes from the start):

  offset  type     field
  0       char[8]  magic "SOVQCLB1"
  8       u32      version (1)
  12      u32      code_offset     where the code starts (a multiple of CODE_ALIGN)
  16      u32      code_size       bytes of code
  20      u32      instrlen        SP_CS_INSTRLEN: code length in units of 16 instructions of 8 bytes (128 bytes;
                                   Mesa 25.0.7 ir3.c pads to instr_align = 16 on a6xx+, ir3_compiler.c)
  24      u16      full_regs       SP_CS_CTRL_REG0.FULLREGFOOTPRINT: vec4 full-precision registers per thread
  26      u16      half_regs       SP_CS_CTRL_REG0.HALFREGFOOTPRINT
  28      u16      constlen        HLSQ_CS_CNTL.CONSTLEN: vec4 constants the code reads (a multiple of 4)
  30      u16      branchstack     SP_CS_CTRL_REG0.BRANCHSTACK
  32      u32      shared_bytes    local (shared) memory per workgroup
  36      u8       threadsize      0 THREAD64, 1 THREAD128 (a6xx_threadsize)
  37      u8[5]    sysval regids   where the code expects the workgroup id, size, offset, local id and linear local
                                   id (a3xx_regid: register << 2 | component; 0xfc = not used)
  42      u16[3]   local size      the workgroup size the code requires (reqd_work_group_size), 0 = any
  48      u16      nargs
  50      u16      name_len
  52      u32      args_offset
  56      u32      name_offset
  60      u32      reserved (0)
  64      ...      arguments, nargs x 8 bytes: u8 kind (1 global buffer address, 2 scalar), u8 bytes (the value's
                   size in the constant file: 8 for an address), u16 const_dword (dword offset in the constant file:
                   vec4 index * 4 + component), u32 reserved
  ...     ...      kernel name (utf-8), then the code at code_offset
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"SOVQCLB1"
VERSION = 1
HEADER = struct.Struct("<8sIIIIHHHHIB5B3HHHIII")
ARG = struct.Struct("<BBHI")
CODE_ALIGN = 128  # one SP_CS_INSTRLEN unit
REGID_UNUSED = 0xFC
ARG_BUFFER = 1
ARG_SCALAR = 2
ARG_KINDS = {ARG_BUFFER: "buffer", ARG_SCALAR: "scalar"}


def regid(register: int, component: int) -> int:
  """a3xx_regid of r<register>.<xyzw>."""
  return (register << 2) | component


@dataclass(frozen=True)
class KernelArg:
  kind: int  # ARG_BUFFER | ARG_SCALAR
  nbytes: int  # bytes the value takes in the constant file
  const_dword: int  # dword offset in the constant file


@dataclass(frozen=True)
class KernelBinary:
  """A parsed kernel binary (see the module docstring for the byte layout)."""
  name: str
  code: bytes
  instrlen: int
  full_regs: int
  half_regs: int
  constlen: int
  branchstack: int
  shared_bytes: int
  threadsize: int
  sysvals: tuple[int, int, int, int, int]  # wgid, wgsize, wgoffset, localid, linear localid regids
  local_size: tuple[int, int, int]  # required workgroup size, 0 = any
  args: tuple[KernelArg, ...]

  @property
  def threadsize_name(self) -> str:
    return ("THREAD64", "THREAD128")[self.threadsize]

  def pack(self) -> bytes:
    name = self.name.encode()
    args_offset = HEADER.size
    name_offset = args_offset + ARG.size * len(self.args)
    code_offset = -(-(name_offset + len(name)) // CODE_ALIGN) * CODE_ALIGN
    head = HEADER.pack(MAGIC, VERSION, code_offset, len(self.code), self.instrlen, self.full_regs, self.half_regs,
                       self.constlen, self.branchstack, self.shared_bytes, self.threadsize, *self.sysvals,
                       *self.local_size, len(self.args), len(name), args_offset, name_offset, 0)
    args = b"".join(ARG.pack(a.kind, a.nbytes, a.const_dword, 0) for a in self.args)
    body = head + args + name
    return body + bytes(code_offset - len(body)) + self.code


def parse(blob: bytes) -> KernelBinary:
  """The KernelBinary in `blob`.

  Raises:
    ValueError: not a SOVQCLB1 container, an unknown version, or a field pointing outside the blob; the message
      names the field and values.
  """
  if len(blob) < HEADER.size or blob[:8] != MAGIC:
    raise ValueError(f"not a qcomdrv kernel binary: {len(blob)} bytes starting {blob[:8]!r}, expected magic {MAGIC!r}"
                     " (a vendor OpenCL binary must be converted by qcomdrv.compile first)")
  (_, version, code_offset, code_size, instrlen, full_regs, half_regs, constlen, branchstack, shared_bytes,
   threadsize, *rest) = HEADER.unpack_from(blob)
  sysvals, local_size = tuple(rest[:5]), tuple(rest[5:8])
  nargs, name_len, args_offset, name_offset, _ = rest[8:]
  if version != VERSION:
    raise ValueError(f"kernel binary version {version}; qcomdrv reads version {VERSION}")
  for what, start, size in (("code", code_offset, code_size), ("arguments", args_offset, nargs * ARG.size),
                            ("name", name_offset, name_len)):
    if start + size > len(blob):
      raise ValueError(f"kernel binary {what} at {start}..{start + size} runs past its {len(blob)} bytes")
  if code_size > instrlen * CODE_ALIGN:
    raise ValueError(f"kernel binary code of {code_size} bytes exceeds instrlen {instrlen} ({instrlen * CODE_ALIGN} "
                     "bytes)")
  if threadsize not in (0, 1):
    raise ValueError(f"kernel binary threadsize {threadsize}: 0 (THREAD64) or 1 (THREAD128)")
  args = []
  for k in range(nargs):
    kind, nbytes, const_dword, _ = ARG.unpack_from(blob, args_offset + k * ARG.size)
    if kind not in ARG_KINDS:
      raise ValueError(f"kernel binary argument {k} has kind {kind}; known: {ARG_KINDS}")
    args.append(KernelArg(kind, nbytes, const_dword))
  name = blob[name_offset:name_offset + name_len].decode()
  code = bytes(blob[code_offset:code_offset + code_size])
  return KernelBinary(name, code, instrlen, full_regs, half_regs, constlen, branchstack, shared_bytes, threadsize,
                      sysvals, local_size, tuple(args))

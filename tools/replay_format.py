"""The .sovreplay container: a captured training or inference step, readable with numpy and the standard library only.

The layout, the manifest's fields and the refusal rules are documented in tools/REPLAY_FORMAT.md; this module is the
one encoder and decoder of it (frontend.replay_save writes through `encode`, tools.replay reads through `read`).

  prelude   64 bytes: magic, format version, flags, manifest length, body length, sha256 of manifest + body
  manifest  UTF-8 JSON: target, kernels, buffers, launches, inputs, outputs, variables (version 2), blob table
  body      the blobs (kernel binaries, initial buffer contents), each 64-byte aligned, referenced by index

Nothing here executes or unpickles file contents: the manifest is JSON and the blobs are bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"SOVRPLY\x00"
FORMAT_VERSION = 2  # the newest version this module reads and writes; version 1 is version 2 without Variables
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1  # a Variable is a kernel's int32 parameter
PRELUDE = struct.Struct("<8sIIQQ32s")  # magic, version, flags, manifest bytes, body bytes, sha256
BLOB_ALIGN = 64
ROLES = ("input", "output", "parameter", "optimizer_state", "state", "intermediate")
PERSISTENT_ROLES = ("parameter", "optimizer_state", "state")

# sovereign dtype name -> numpy dtype holding its bits (bfloat16 travels as its raw uint16 bits, as Buffer.numpy does)
NUMPY_DTYPES = {"bool": "|b1", "int8": "|i1", "int16": "<i2", "int32": "<i4", "int64": "<i8", "uint8": "|u1",
                "uint16": "<u2", "uint32": "<u4", "uint64": "<u8", "float16": "<f2", "bfloat16": "<u2",
                "float32": "<f4", "float64": "<f8"}


# The CPU kernel ABI of format version 1 (frontend/runtime/cpu.py, cpu_pool.py): each kernel is a shared object
# exporting `void NAME(void *param0, ..., long long start, long long end)`, which computes iterations [start, end) of
# its outermost loop, and `void NAME_packed(void **params, long long start, long long end)`; the thread pool object
# exports `int sov_pool_start(int workers)` and `void sov_pool_run(void *packed, void **params, long long n,
# int threads)`, which splits [0, n) into 4 * threads chunks.
CPU_ABI = "sovereign-c-kernel-1"
# x86 /proc/cpuinfo flags that name instruction sets a compiler may use under -march=native (others, like
# "hypervisor" or "constant_tsc", say nothing about which instructions run)
_X86_ISA_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "bmi", "amx", "popcnt", "abm", "lzcnt", "movbe", "aes",
                     "pclmul", "sha_ni", "vaes", "vpclmul", "gfni", "adx", "rdrand", "rdseed", "cx16", "mmx")


def host_isa() -> list[str]:
  """The instruction-set features of this CPU that compiled kernels may depend on, sorted (x86: /proc/cpuinfo flags
  of instruction sets; other architectures: every listed feature). Empty when /proc/cpuinfo cannot be read."""
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    return []
  for line in text.splitlines():
    key, _, value = line.partition(":")
    if key.strip() in ("flags", "Features"):
      features = value.split()
      if platform.machine() in ("x86_64", "AMD64", "i686"):
        features = [f for f in features if f.startswith(_X86_ISA_PREFIXES)]
      return sorted(set(features))
  return []


def launch_dependencies(accesses) -> list[list[int]]:
  """The ordering a launch list needs, from what each launch touches: `accesses` holds, per launch in order, the pair
  (buffers it writes, buffers it reads), buffers being any hashable keys (buffer-table indices, ids, addresses).
  Returns, per launch, the sorted indices of the earlier launches it must wait for: the last writer of each buffer it
  reads or writes (read after write, write after write) and every reader of a buffer it writes since that buffer's
  last write (write after read). Launches that share no written buffer get no edge and may run at the same time.

  The edges are direct conflicts only; a driver may drop those implied by others (tools.replay, the frontend's
  device graphs and nvdrv.replay.CommandBuffer's dependency mode consume this)."""
  last_writer: dict = {}
  readers: dict = {}  # buffer -> launches that read it since its last write
  deps: list[list[int]] = []
  for j, (writes, reads) in enumerate(accesses):
    writes, reads = set(writes), set(reads)
    need = {last_writer[b] for b in writes | reads if b in last_writer}
    for b in writes:
      need.update(readers.get(b, ()))
    need.discard(j)
    deps.append(sorted(need))
    for b in reads - writes:
      readers.setdefault(b, []).append(j)
    for b in writes:
      last_writer[b], readers[b] = j, []
  return deps


class ReplayFormatError(Exception):
  """A .sovreplay file cannot be read: not one, a newer format, truncated, corrupted, or an inconsistent manifest."""


@dataclass
class ReplayFile:
  """A checked, decoded file: the manifest (plain JSON values) and the body the blob table points into."""
  path: str
  version: int
  manifest: dict
  body: memoryview

  def blob(self, index: int) -> memoryview:
    entry = self.manifest["blobs"][index]
    return self.body[entry["offset"]:entry["offset"] + entry["nbytes"]]

  def array(self, buffer: dict) -> np.ndarray:
    """The initial contents of a buffer-table entry as a flat read-only numpy array."""
    return np.frombuffer(self.blob(buffer["init"]), dtype=NUMPY_DTYPES[buffer["dtype"]])


def pack_blobs(blobs: list[bytes]) -> tuple[bytes, list[dict]]:
  """The body for `blobs` and its blob table: each blob starts on a BLOB_ALIGN boundary and carries its sha256."""
  body = bytearray()
  table = []
  for blob in blobs:
    body += bytes(-len(body) % BLOB_ALIGN)
    table.append({"offset": len(body), "nbytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})
    body += blob
  return bytes(body), table


def version_needed(manifest: dict) -> int:
  """The oldest format version that holds `manifest`: 2 where a kernel reads Variables, else 1 (so a step without
  them stays readable by version-1 loaders)."""
  return 2 if manifest.get("variables") else 1


def encode(manifest: dict, blobs: list[bytes], check: bool = True, version: int | None = None) -> bytes:
  """The whole file for `manifest` (without its "blobs" key, which this fills) and the blobs it references, written
  as format `version` (default: version_needed). check=False skips the manifest check (tests write inconsistent
  files with it)."""
  body, table = pack_blobs(blobs)
  version = version_needed(manifest) if version is None else version
  manifest = dict(manifest, format="sovreplay", version=version, blobs=table)
  if check:
    check_manifest(manifest, "encode", version)
  head = json.dumps(manifest, indent=1, sort_keys=True).encode()
  head += b" " * (-(PRELUDE.size + len(head)) % BLOB_ALIGN)  # the body starts aligned in the file too
  digest = hashlib.sha256(head + body).digest()
  return PRELUDE.pack(MAGIC, version, 0, len(head), len(body), digest) + head + body


def write(path: str, manifest: dict, blobs: list[bytes]) -> int:
  """Writes the file atomically (a reader never sees half of it); returns its size in bytes."""
  data = encode(manifest, blobs)
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
  return len(data)


def read(path: str) -> ReplayFile:
  """Reads and checks a file: magic, version, lengths, checksum, manifest consistency (in that order).

  Raises:
    ReplayFormatError: the first check that fails, naming the values involved and what to do.
    OSError: the file cannot be opened.
  """
  with open(path, "rb") as f:
    data = f.read()
  return decode(data, path)


def decode(data: bytes, path: str = "<bytes>") -> ReplayFile:
  """As `read`, from the file's bytes."""
  if len(data) < PRELUDE.size or not data.startswith(MAGIC):
    raise ReplayFormatError(f"{path}: not a .sovreplay file (the first 8 bytes are {bytes(data[:8])!r}, a replay file "
                            f"starts with {MAGIC!r}); save one with TinyJit.save or `sov train-mnist --save-step`")
  magic, version, flags, head_len, body_len, digest = PRELUDE.unpack_from(data)
  if version > FORMAT_VERSION:
    raise ReplayFormatError(f"{path}: format version {version} is newer than this loader's {FORMAT_VERSION}; update "
                            f"Sovereign to a release that reads version {version}")
  if version < 1:
    raise ReplayFormatError(f"{path}: format version {version} does not exist (versions start at 1)")
  if flags != 0:
    raise ReplayFormatError(f"{path}: prelude flags 0x{flags:x} are not defined in format version {version}")
  expected = PRELUDE.size + head_len + body_len
  if len(data) != expected:
    raise ReplayFormatError(f"{path}: {len(data)} bytes, the prelude promises {expected} (manifest {head_len} + body "
                            f"{body_len} + {PRELUDE.size}); the file is truncated or has bytes appended")
  view = memoryview(data)
  actual = hashlib.sha256(view[PRELUDE.size:]).digest()
  if actual != digest:
    raise ReplayFormatError(f"{path}: checksum mismatch (sha256 of manifest + body is {actual.hex()[:16]}..., the "
                            f"prelude records {digest.hex()[:16]}...); the file is corrupted, save or copy it again")
  try:
    manifest = json.loads(bytes(view[PRELUDE.size:PRELUDE.size + head_len]))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ReplayFormatError(f"{path}: the manifest is not UTF-8 JSON ({e})") from e
  check_manifest(manifest, path, version)
  body = view[PRELUDE.size + head_len:]
  for i, entry in enumerate(manifest["blobs"]):
    if entry["offset"] + entry["nbytes"] > len(body):
      raise ReplayFormatError(f"{path}: blob {i} ({entry['offset']}+{entry['nbytes']}) lies past the body's "
                              f"{len(body)} bytes")
  return ReplayFile(path, version, manifest, body)


def _require(cond: bool, where: str, what: str) -> None:
  if not cond:
    raise ReplayFormatError(f"{where}: inconsistent manifest: {what}")


def check_manifest(m: dict, where: str, version: int = FORMAT_VERSION) -> None:
  """Checks that every reference in the manifest points at something that exists and every size agrees (and, for
  format `version` 1, that nothing of version 2 is there).

  Raises:
    ReplayFormatError: naming the first inconsistency.
  """
  for key in ("target", "kernels", "buffers", "launches", "inputs", "outputs", "blobs"):
    _require(key in m, where, f"no {key!r} section")
  _require(isinstance(m["target"], dict) and "kind" in m["target"], where, "target has no 'kind'")
  nblobs, nbuffers, nkernels = len(m["blobs"]), len(m["buffers"]), len(m["kernels"])
  for i, b in enumerate(m["buffers"]):
    _require(b.get("dtype") in NUMPY_DTYPES, where, f"buffer {i} has unknown dtype {b.get('dtype')!r}")
    _require(b.get("role") in ROLES, where, f"buffer {i} has unknown role {b.get('role')!r} (roles: {ROLES})")
    _require(isinstance(b.get("size"), int) and b["size"] >= 0, where, f"buffer {i} size {b.get('size')!r}")
    init = b.get("init")
    if init is not None:
      _require(0 <= init < nblobs, where, f"buffer {i} init blob {init} of {nblobs}")
      itemsize = int(NUMPY_DTYPES[b["dtype"]][2:])
      _require(m["blobs"][init]["nbytes"] == b["size"] * itemsize, where,
               f"buffer {i} holds {b['size']} x {b['dtype']} but its init blob has {m['blobs'][init]['nbytes']} bytes")
    if b["role"] in PERSISTENT_ROLES:
      _require(init is not None, where, f"buffer {i} ({b.get('name')}) is {b['role']} but has no initial contents")
  for i, launch in enumerate(m["launches"]):
    _require(0 <= launch.get("kernel", -1) < nkernels, where, f"launch {i} names kernel {launch.get('kernel')}")
    nparams = len(m["kernels"][launch["kernel"]]["params"])
    _require(len(launch["args"]) == nparams, where, f"launch {i} passes {len(launch['args'])} buffers to a kernel "
                                                    f"of {nparams} parameters")
    _require(all(0 <= a < nbuffers for a in launch["args"]), where, f"launch {i} args {launch['args']} out of range")
  for section in ("inputs", "outputs"):
    names = [s["name"] for s in m[section]]
    _require(len(set(names)) == len(names), where, f"{section} names repeat: {names}")
    for slot in m[section]:
      _require(0 <= slot.get("buffer", -1) < nbuffers, where, f"{section[:-1]} {slot['name']!r} buffer out of range")
      buf = m["buffers"][slot["buffer"]]
      count = 1
      for s in slot["shape"]:
        count *= s
      _require(count == buf["size"], where, f"{section[:-1]} {slot['name']!r} shape {slot['shape']} is not the "
                                            f"{buf['size']} elements of its buffer")
  _check_variables(m, where, version)
  for kernel in m["kernels"]:
    _require(all(isinstance(p, dict) and isinstance(p.get("written"), bool) for p in kernel.get("params", [None])),
             where, f"kernel {kernel.get('name')} params {kernel.get('params')!r}: each needs a boolean 'written' (the "
                    f"loader orders launches by what they write)")
    for key, value in kernel.items():
      if key.endswith("_blob"):
        _require(0 <= value < nblobs, where, f"kernel {kernel.get('name')} {key} {value} of {nblobs}")


def _check_variables(m: dict, where: str, version: int) -> None:
  """variables[] (name, lo, hi, value: int32s with lo <= value <= hi, names distinct) and kernels[].vars (indices into
  it, each at most once). Version 1 has neither."""
  variables = m.get("variables", [])
  uses = [k.get("vars", []) for k in m["kernels"]]
  if version < 2:
    _require(not variables and not any(uses), where, "format version 1 has no Variables (variables[], kernels[].vars); "
                                                     "the file says version 1 but holds them")
    return
  _require(isinstance(variables, list), where, f"variables is {type(variables).__name__}, not a list")
  for i, v in enumerate(variables):
    fields = [v.get(key) if isinstance(v, dict) else None for key in ("lo", "value", "hi")]
    ints = all(isinstance(f, int) and not isinstance(f, bool) for f in fields)
    _require(isinstance(v, dict) and isinstance(v.get("name"), str) and v["name"].isidentifier(), where,
             f"variable {i} ({v!r}) needs a 'name' that is an identifier")
    _require(ints and INT32_MIN <= fields[0] <= fields[1] <= fields[2] <= INT32_MAX, where,
             f"variable {v['name']!r}: lo {fields[0]!r} <= value {fields[1]!r} <= hi {fields[2]!r} must be int32s "
             f"in that order")
  names = [v["name"] for v in variables]
  _require(len(set(names)) == len(names), where, f"variable names repeat: {names}")
  for kernel, used in zip(m["kernels"], uses):
    _require(isinstance(used, list) and all(isinstance(i, int) and 0 <= i < len(variables) for i in used)
             and len(set(used)) == len(used), where,
             f"kernel {kernel.get('name')} vars {used!r}: each an index into the {len(variables)} variables, once")


def describe(rf: ReplayFile) -> str:
  """A few lines for `sov replay --info`: target, kernel and launch counts, buffer roles, inputs and outputs."""
  m = rf.manifest
  roles: dict[str, list[int]] = {}
  for b in m["buffers"]:
    roles.setdefault(b["role"], []).append(b["size"] * int(NUMPY_DTYPES[b["dtype"]][2:]))
  lines = [f"{rf.path}: sovreplay format {rf.version}, target {json.dumps(m['target'], sort_keys=True)}",
           f"  {len(m['kernels'])} kernels, {len(m['launches'])} launches per step"]
  for role, sizes in sorted(roles.items()):
    lines.append(f"  {role:<16} {len(sizes):4d} buffers {sum(sizes):>12,d} bytes")
  for section in ("inputs", "outputs"):
    for slot in m[section]:
      dtype = m["buffers"][slot["buffer"]]["dtype"]
      lines.append(f"  {section[:-1]:<6} {slot['name']:<12} {tuple(slot['shape'])} {dtype}"
                   f"{' (has saved contents)' if m['buffers'][slot['buffer']].get('init') is not None else ''}")
  for v in m.get("variables", []):
    lines.append(f"  variable {v['name']:<10} int32 in [{v['lo']}, {v['hi']}], saved value {v['value']}")
  return "\n".join(lines)

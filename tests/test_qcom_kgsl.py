"""The kgsl interface: qcomdrv.kgsl's cffi declarations and request words against the C compiler's reading of
msm_kgsl.h (qcomdrv/generated/kgsl.py), and the simulated kgsl device's ioctl semantics (argument checks and errno
values as kgsl.c answers them) through the unmodified driver and through raw requests.
"""
from __future__ import annotations

import ctypes
import errno
import mmap

import pytest

from qcomdrv import chips, kgsl
from qcomdrv.chips import UnsupportedChip
from qcomdrv.device import QCOMDevice
from qcomdrv.errors import QCOMError
from qcomdrv.generated import kgsl as facts
from qcomdrv.kgsl import ffi
from qcomdrv.sim import SimKGSL

USED = [name for name in dir(kgsl) if name.startswith("IOCTL_KGSL_")]


@pytest.mark.parametrize("name", USED)
def test_request_words_match_the_header(name):
  word, macro, nr, struct = facts.IOCTLS[name]
  assert getattr(kgsl, name) == word, f"{name}: ours 0x{getattr(kgsl, name):08x}, msm_kgsl.h 0x{word:08x}"


@pytest.mark.parametrize("struct", sorted({facts.IOCTLS[n][3] for n in USED} | {
  "kgsl_devinfo", "kgsl_version", "kgsl_gpu_model", "kgsl_shadowprop", "kgsl_command_object",
  "kgsl_command_syncpoint"}))
def test_struct_layouts_match_the_header(struct):
  size, fields = facts.STRUCTS[struct]
  ours = dict(ffi.typeof(f"struct {struct}").fields)
  assert ffi.sizeof(f"struct {struct}") == size
  assert list(ours) == [name for name, _, _ in fields]
  for name, offset, fsize in fields:
    assert (ours[name].offset, ffi.sizeof(ours[name].type)) == (offset, fsize), f"{struct}.{name}"


@pytest.fixture
def sim():
  return SimKGSL("a740")


@pytest.fixture
def dev(sim):
  return QCOMDevice(os=sim)


def errno_of(call) -> int:
  with pytest.raises(OSError) as info:
    call()
  return info.value.errno


def test_properties_through_the_driver(dev):
  assert dev.chip.name == "a740" and dev.gmem_bytes == 3 << 20 and dev.gpu_id == 740
  assert dev.version()[:2] == (3, 14)
  assert "Adreno740" in dev.model and "a740" in dev.describe()


@pytest.mark.parametrize("chip", ["a630", "a650", "a660", "a730", "a740"])
def test_every_supported_chip_opens(chip):
  dev = QCOMDevice(os=SimKGSL(chip))
  assert dev.chip.name == chip and dev.chip.gen == ("a7xx" if chip.startswith("a7") else "a6xx")


def test_unsupported_chip_names_the_supported_list():
  a540 = chips.ChipInfo("a540", 0x05040001, "a6xx", "ADRENO_5XX", 1 << 20, 64, 2, 16, 64, 2, 32 << 10, 256)
  with pytest.raises(UnsupportedChip) as info:
    QCOMDevice(os=SimKGSL(a540))
  text = str(info.value)
  assert "0x05040001 is not supported" in text and "a630 (0x06030001)" in text and "a740 (0x43050a01)" in text
  assert chips.chip_info(0x06030000).name == "a630"  # any patch level of an a6xx part
  with pytest.raises(UnsupportedChip, match="no Adreno called 'a999'"):
    chips.by_name("a999")


def test_alloc_map_and_free(dev, sim):
  buf = dev.alloc(10_000)
  assert buf.size == 12288 and buf.gpuaddr >= 0x10_0000_0000 and buf.gpuaddr != buf.cpu
  dev.view(buf)[:4] = b"\x01\x02\x03\x04"
  assert sim.memory.read(buf.gpuaddr, 4, "test") == b"\x01\x02\x03\x04"  # the CPU mapping is the GPU's memory
  dev.free(buf)
  assert sim.memory.object_at(buf.gpuaddr) is None
  with pytest.raises(QCOMError, match=r"IOCTL_KGSL_GPUOBJ_FREE failed: EINVAL.*object"):
    dev.free(buf)


def test_user_memory(dev, sim):
  host = mmap.mmap(-1, 8192)
  address = ctypes.addressof(ctypes.c_char.from_buffer(host))
  buf = dev.map_user(address, 8192)
  host[:3] = b"abc"
  assert sim.memory.read(buf.gpuaddr, 3, "test") == b"abc"
  dev.free(buf)
  with pytest.raises(QCOMError, match="IOCTL_KGSL_MAP_USER_MEM failed: EINVAL"):
    dev.map_user(address + 1, 100)


def test_allocation_errors(dev):
  with pytest.raises(QCOMError, match="GPUOBJ_ALLOC failed: EINVAL"):
    dev.alloc(5 << 30)  # over 4 GiB: kgsl refuses the size
  first = dev.alloc(3 << 30)
  with pytest.raises(QCOMError, match="GPUOBJ_ALLOC failed: ENOMEM.*out of memory"):
    dev.alloc(3 << 30)
  dev.free(first)


def raw(sim, fd, request, struct, **values):
  arg = ffi.new(f"struct {struct} *")
  for k, v in values.items():
    setattr(arg, k, v)
  sim.ioctl(fd, request, arg)
  return arg


def test_raw_ioctl_errors(sim):
  fd = sim.open("/dev/kgsl-3d0")
  assert errno_of(lambda: sim.ioctl(fd, (3 << 30) | (8 << 16) | (0x09 << 8) | 0x7E, ffi.NULL)) == errno.ENOTTY
  assert errno_of(lambda: sim.ioctl(fd, kgsl.IOCTL_KGSL_GPUOBJ_ALLOC & ~(0xFF << 8), ffi.NULL)) == errno.ENOTTY
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_GPUOBJ_ALLOC, "kgsl_gpuobj_alloc", size=0)) == errno.EINVAL
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_GPUOBJ_INFO, "kgsl_gpuobj_info", id=999)) == errno.EINVAL
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_DRAWCTXT_DESTROY, "kgsl_drawctxt_destroy",
                              drawctxt_id=42)) == errno.EINVAL
  info = ffi.new("struct kgsl_devinfo *")
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_DEVICE_GETPROPERTY, "kgsl_device_getproperty",
                              type=kgsl.KGSL_PROP_DEVICE_INFO, value=info, sizebytes=8)) == errno.EINVAL
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_DEVICE_GETPROPERTY, "kgsl_device_getproperty",
                              type=kgsl.KGSL_PROP_DEVICE_INFO, value=ffi.NULL, sizebytes=40)) == errno.EFAULT
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_DEVICE_GETPROPERTY, "kgsl_device_getproperty",
                              type=0x7777, value=info, sizebytes=40)) == errno.EINVAL
  cmd = ffi.new("struct kgsl_command_object *", {"gpuaddr": 0x1234, "size": 16, "flags": kgsl.KGSL_CMDLIST_IB})
  ctx = raw(sim, fd, kgsl.IOCTL_KGSL_DRAWCTXT_CREATE, "kgsl_drawctxt_create", flags=kgsl.context_flags()).drawctxt_id
  submit = {"cmdlist": int(ffi.cast("uintptr_t", cmd)), "cmdsize": 32, "numcmds": 1, "context_id": ctx}
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_GPU_COMMAND, "kgsl_gpu_command", **submit)) == errno.EINVAL
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_GPU_COMMAND, "kgsl_gpu_command",
                              **{**submit, "numcmds": 101})) == errno.EINVAL
  assert errno_of(lambda: raw(sim, fd, kgsl.IOCTL_KGSL_GPU_COMMAND, "kgsl_gpu_command",
                              **{**submit, "context_id": ctx + 1})) == errno.EINVAL
  assert errno_of(lambda: sim.mmap(4096, fd, 77 << 12)) == errno.EINVAL
  assert errno_of(lambda: sim.ioctl(fd + 1, kgsl.IOCTL_KGSL_GPUOBJ_ALLOC, ffi.NULL)) == errno.EBADF
  with pytest.raises(FileNotFoundError):
    sim.open("/dev/kgsl-2d0")


def test_mismatched_request_words(sim):
  """kgsl copies min(user, kernel) bytes of a request whose size differs; the strict simulator refuses it."""
  fd = sim.open("/dev/kgsl-3d0")
  short = (kgsl.IOCTL_KGSL_DRAWCTXT_CREATE & ~(0x3FFF << 16)) | (4 << 16)  # a 4-byte kgsl_drawctxt_create
  arg = ffi.new("struct kgsl_drawctxt_create *", {"flags": kgsl.context_flags()})
  assert errno_of(lambda: sim.ioctl(fd, short, arg)) == errno.ENOTTY
  assert "differs from msm_kgsl.h's" in sim.kernel_log()[-1]
  lenient = SimKGSL("a660", strict=False)
  fd = lenient.open("/dev/kgsl-3d0")
  lenient.ioctl(fd, short, arg)
  assert arg.drawctxt_id == 0  # only the first 4 bytes travel back: the id stayed in the kernel's copy
  assert len(lenient.contexts) == 1


def test_timestamps_of_an_empty_context(dev, sim):
  read = ffi.new("struct kgsl_cmdstream_readtimestamp_ctxtid *", {"context_id": dev.context,
                                                                   "type": kgsl.KGSL_TIMESTAMP_RETIRED})
  sim.ioctl(dev.fd, kgsl.IOCTL_KGSL_CMDSTREAM_READTIMESTAMP_CTXTID, read)
  assert read.timestamp == 0
  read.type = 99
  assert errno_of(lambda: sim.ioctl(dev.fd, kgsl.IOCTL_KGSL_CMDSTREAM_READTIMESTAMP_CTXTID, read)) == errno.EINVAL
  dev.synchronize()  # nothing submitted: nothing to wait for
  assert dev.reset_status() == kgsl.KGSL_CTX_STAT_NO_ERROR


def test_close_frees_everything(dev, sim):
  dev.alloc(4096)
  dev.close()
  assert len(sim.memory.objects) == 1 and not sim.contexts and not sim.fds  # only kgsl's own memstore is left

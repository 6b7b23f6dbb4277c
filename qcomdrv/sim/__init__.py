"""A simulated kgsl device (simulated hardware, kept apart from the driver): SimKGSL implements qcomdrv's OS
interface, so `QCOMDevice(os=SimKGSL("a740"))` runs the unmodified driver against it.

  kgsl.py      the device model: ioctls parsed by request word and msm_kgsl.h's struct layouts, kgsl's errno
               values, contexts, per-context timestamps, faults and the kernel log
  memory.py    GPU objects backed by host memory at GPU addresses of their own; every GPU access is translated
  cp.py        the command processor: PKT4/PKT7 decoding with parity checks, register and constant files, events,
               CP_WAIT_REG_MEM (stalls and resumes), CP_REG_TO_MEM, CP_MEM_WRITE, CP_LOAD_STATE6_FRAG, dispatch
  dispatch.py  the state checks of a dispatch (listed there)
  compiler.py  the stand-in OpenCL compiler (`opencl_compiler()` of the simulated OS) and its code layout
  executor.py  runs a dispatch by compiling the kernel's OpenCL C for the host CPU and running it over the grid
"""
from qcomdrv.sim.kgsl import SimKGSL

__all__ = ["SimKGSL"]

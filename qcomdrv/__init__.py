"""qcomdrv: Qualcomm Adreno (a6xx, a7xx) through kgsl ioctls, and a simulated kgsl device to test it without one.

Layers (each module's docstring has the details):

  osif.py      the OS seam: open / ioctl / mmap / munmap / view / kernel_log / opencl_compiler. LinuxOS is the real
               one (libc through cffi); qcomdrv.sim.SimKGSL implements the same interface as simulated hardware.
               The driver is handed one of them and never asks which (no "if simulated" anywhere below).
  kgsl.py      the kgsl uapi as cffi declarations and request words, in our own form from msm_kgsl.h (Mesa 25.0.7);
               checked against generated/kgsl.py, which the C compiler computed from the header itself.
  chips.py     the supported chips (a630, a650, a660, a730, a740; linux 6.12's a6xx_catalog.c and Mesa's
               freedreno_devices.py) derived once into a frozen ChipInfo; an unknown chip id raises UnsupportedChip
               naming the supported list. Simulator defaults: a660 (a6xx) and a740 (a7xx).
  regs.py      named-field registers and packet dwords over generated/{a6xx,a7xx}_regs.py and pm4_{a6xx,a7xx}.py
               (tools/gen_qcom_tables.py from a6xx.xml and adreno_pm4.xml).
  pm4.py       PKT4/PKT7 headers with their parity bits and one emitter per packet (CP_SET_MARKER, CP_EVENT_WRITE /
               CP_EVENT_WRITE7 with timestamps and cache invalidates, CP_WAIT_REG_MEM, CP_WAIT_FOR_IDLE,
               CP_REG_TO_MEM, CP_MEM_WRITE, CP_LOAD_STATE6_FRAG, CP_EXEC_CS, CP_RUN_OPENCL) plus the compute state
               writes; decode.py prints a stream by packet and register name from the same tables.
  device.py    QCOMDevice: properties, context, GPU objects (alloc, free, mmap), user memory, submission
               (IOCTL_KGSL_GPU_COMMAND with one IB), bounded timestamp waits, fault reporting, recovery.
  binary.py    the kernel binary container the driver loads (layout documented there): code, register footprint,
               constants, shared memory, sysval registers, required local size and the argument table.
  compile.py   kernel compilation through the device's OpenCL library (Khronos API, documented); converting the
               vendor's program binary is an explicit seam that raises CompilerUnavailable, because that layout is
               not publicly documented.
  program.py   a binary in a GPU object and its dispatches; bad launches are refused before submission.
  sim/         the simulated kgsl device (simulated hardware, apart from the driver).

Frontend: frontend/runtime/qcom.py (DEV=QCOM). Its probe opens /dev/kgsl-3d0 through LinuxOS; with QCOM_SIM=<chip>
(a630, a650, a660, a730, a740, or a6xx / a7xx) it injects SimKGSL of that chip instead. Kernels come from
compiler/render_cl.py (OpenCL C from the shared GPU lowering, compiler/lower_gpu.py, used as is).

What the simulation checks (tests/test_qcom_*.py exercise each):
  - ioctls: request words against msm_kgsl.h (strict: a word whose size or direction differs is refused, where real
    kgsl would copy the smaller size), struct layouts from the C compiler's reading of the header, kgsl's argument
    checks and errno values (ENOTTY, EINVAL, ENOMEM, EFAULT, EDEADLK, ETIMEDOUT, EBADF);
  - memory: GPU addresses distinct from CPU addresses, guard pages, every GPU access (IB fetch, shader fetch,
    packet operands, kernel arguments) inside one live object, else a page fault;
  - packets: header type and parity bits, payload lengths, known opcodes for the generation (anything not modelled
    faults as "not simulated" instead of passing silently);
  - dispatch state (qcomdrv/sim/dispatch.py lists it): every register a compute dispatch reads written in the
    submission, cache and HLSQ invalidates before it, shader address alignment and length, register footprint,
    THREADSIZE agreement, sysval registers, CONSTLEN / CONSTANTRAMMODE, loaded argument constants, shared memory
    size, local size, global size = local x groups, last-group size (a7xx), waves that fit the register file;
  - execution: the kernel's OpenCL C compiled for the host and run over the grid on the simulated memory (barriers
    by fibers, barrier divergence detected), results flushed (CACHE_FLUSH_TS) before the submission ends;
  - timestamps: per-context, retired in order, CP_WAIT_REG_MEM stalls until memory changes, waits time out;
  - faults: the context is invalidated, KGSL_PROP_GPU_RESET_STAT reports it once, the kernel log says why.

What remains unverifiable without hardware:
  - that the register values are what the hardware needs beyond what a6xx.xml documents: unk fields, SP_CS_CNTL_*
    and HLSQ_CS_CNTL_* on each family, the sysval register choice, KERNELDIM, CONSTANTRAMMODE thresholds, whether
    SP_CS_PVT_MEM_* may stay zero, whether HLSQ_CS_LAST_LOCAL_SIZE is required on a7xx;
  - CP_EVENT_WRITE7's payload for a user 32-bit write and CACHE_FLUSH_TS's flush semantics on a7xx;
    CP_RUN_OPENCL's payload (adreno_pm4.xml documents none; one zero dword is sent);
  - a real shader: the stand-in compiler's "code" is OpenCL C, and its register footprint and constant layout are
    made up; the vendor compiler's binaries cannot be converted (compile.py), so no real dispatch runs yet;
  - kgsl's exact errno in corner cases the public headers do not state, the mmap offset convention (Mesa's
    `id << 12`), memory limits, preemption, timeouts of real hangs, and performance.
"""

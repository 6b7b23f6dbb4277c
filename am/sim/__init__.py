"""Wave emulator: the shader engine of the simulated AMD cards (gfx1100 / RDNA3 and gfx1201 / RDNA4), in numpy.

    from compiler.rdna import build_kernel, load_code_object, pointer_arg, write_code_object
    from am.sim import FlatMemory, dispatch
    co = load_code_object(write_code_object([build_kernel("k", code, "gfx1100", args=[...])], "gfx1100"))
    mem = FlatMemory()
    stats = dispatch(co, "k", grid=(8, 1, 1), block=(64, 1, 1), args=[mem.alloc_array(x), ...], memory=mem)

Machine code is decoded once per pc with compiler.rdna's disassembler and compiled into closures bound to numpy
register arrays; waves of a dispatch run batched (W, lanes) in lockstep until a scalar branch splits them.

  errors.py    SimError and its kinds: UnsupportedInstruction, MemoryFault, WaitcntHazard, BarrierError, ...
  memory.py    the memory interface (vector load / store / atomic at 64-bit addresses), FlatMemory, PagedMemory
  program.py   decode cache and operand facts       regs.py    register files, EXEC, operand views, constants
  salu.py      scalar ALU, branches, barriers, waits  alu.py    vector ALU numerics (one table by mnemonic)
  valu.py      vector encodings, compares, carries, lane ops, VOPD, packed math
  wmma.py      wave matrix multiply-accumulate (v_wmma_f32_16x16x16_f16 / bf16) with the per-generation lane layouts
  vmem.py      SMEM, global / flat, buffer           lds.py    DS instructions
  waitcnt.py   outstanding-counter model, use-before-wait check
  wave.py      the execution loop and wave scheduling (splits, barriers)
  dispatch.py  grids, initial register state (AMDGPUUsage "Initial Kernel Execution State"), kernargs

Sources. Semantics follow AMD's "RDNA3 Instruction Set Architecture Reference Guide" (2023-02-20) and "RDNA4
Instruction Set Architecture Reference Guide", chapters Program Flow Control, Scalar ALU Operations, Vector ALU
Operations, Scalar Memory Operations, Vector Memory Operations, Flat/Global, Data Share Operations. Only the RDNA3
guide's front matter was reachable from this machine (a text copy, huggingface.co/spaces/3gg/isa/raw/main/rdna3.txt),
so every fact that could be checked is cited to LLVM 19 (llvm-toolchain-19 source: SIISelLowering.cpp,
AMDGPUSubtarget.cpp, AMDGPUCodeGenPrepare.cpp, DSInstructions.td, AMDGPUDisassembler.cpp; llvm-19-doc AMDGPUUsage and
the gfx11 / gfx12 waitcnt operand pages) or mesa 25.0.7 (buffer descriptor fields). Rules taken from the guides'
descriptions without such a check say "(guide, unverified here)" where they are applied.

This package knows nothing of a driver: a simulated command processor calls run_kernel with a Memory that has the
GPU page tables behind it (PagedMemory's translate hook).
"""
from .errors import (BarrierError, DispatchError, MemoryFault, SimError, StepLimitExceeded, UnsupportedInstruction,
                     WaitcntHazard)
from .memory import FlatMemory, Memory, PageMap, PagedMemory
from .dispatch import Stats, build_kernargs, dispatch, run_kernel

__all__ = ["BarrierError", "DispatchError", "FlatMemory", "Memory", "MemoryFault", "PageMap", "PagedMemory",
           "SimError", "Stats", "StepLimitExceeded", "UnsupportedInstruction", "WaitcntHazard", "build_kernargs",
           "dispatch", "run_kernel"]

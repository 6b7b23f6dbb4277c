"""Sovereign's compiler: one IR (compiler.ir), the scheduler (graph -> kernels), lowering (kernel -> loop program)
and a renderer per target (C now; PTX, RDNA machine code and OpenCL C come with their drivers)."""

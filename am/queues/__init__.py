"""Compute and SDMA queues programmed directly through MQD + HQD registers (no MES, no KIQ).

compute.py: ComputeQueue (ring with wrap, 64-bit doorbell, read/write pointers, HDP flush, timeline signal with
timestamps, on VMID 0 or a user VMID, hang and fault reports, reset after a fault or hang); sdma.py: SdmaQueue (copies,
fences, timestamps); kernel.py: GpuKernel (code object upload, kernarg segment, the PM4 of a dispatch); dispatch.py:
Buffer, dispatch(), CommandBuffer (an IB resubmitted with patched values); transfer.py: SdmaTransfers (host <-> VRAM
copies on SDMA through a staging ring in system memory, ordered against a compute queue by cross-queue waits);
samples.py: the vector_add and spin smoke-test kernels, on VMID 0, on a user VMID, and the hang recovery.
"""

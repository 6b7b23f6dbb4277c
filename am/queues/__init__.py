"""Compute and SDMA queues programmed directly through MQD + HQD registers (no MES, no KIQ).

compute.py: ComputeQueue (ring with wrap, 64-bit doorbell, read/write pointers, HDP flush, timeline signal with
timestamps, reset after a fault); sdma.py: SdmaQueue (copies, fences, timestamps); kernel.py: GpuKernel (code object
upload, kernarg segment, the PM4 of a dispatch); dispatch.py: Buffer, dispatch(), CommandBuffer (an IB resubmitted
with patched values); samples.py: the vector_add smoke-test kernel.
"""

"""The KFD path of AM: where amdgpu.ko is loaded, the same queues (am/queues) through /dev/kfd ioctls.

osif.py: the OS seam (open, ioctl, sysfs reads, CPU VA reservation, mmap); the real one over libc, the simulated one
am/simcard/kfd.py. topology.py: the KFD topology in sysfs. device.py: KfdDevice (version check, ACQUIRE_VM, GPU memory,
events, faults), shaped like am.device.AMDevice where am/queues touches it. queues.py: KfdComputeQueue and
KfdSdmaQueue, am.queues' ComputeQueue and SdmaQueue created through AMDKFD_IOC_CREATE_QUEUE. generated.py: the ioctl
numbers and struct layouts of include/uapi/linux/kfd_ioctl.h (tools/gen_kfd_tables.py).
"""

"""nvdrv: the sovereign NVIDIA driver (Hopper first) over nvidia.ko ioctls, without libcuda.

Empty until the nvdrv issue lands."""

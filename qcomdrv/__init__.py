"""qcomdrv: Qualcomm Adreno (a6xx, a7xx) through kgsl ioctls.

Empty until the qcomdrv issue lands."""

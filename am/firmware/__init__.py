"""AMD firmware location, headers and checksums (PSP, SMU, RLC, MEC, SDMA, IMU).

locate.py: find a file (.bin, .bin.zst, .bin.xz); headers.py: decode and check amdgpu_ucode.h headers;
sets.py: FirmwareSet, what Navi31/Navi48 load through the PSP and in which order."""

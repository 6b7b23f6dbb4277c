"""AMD firmware location, headers and checksums (PSP, SMU, RLC, MEC, SDMA, IMU)."""

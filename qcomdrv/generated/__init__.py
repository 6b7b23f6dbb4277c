"""qcomdrv/generated: Adreno and kgsl fact tables made by tools/gen_qcom_tables.py from Mesa 25.0.7's source (the
Debian mesa_25.0.7.orig.tar.xz): kgsl.py (msm_kgsl.h), a6xx_regs.py / a7xx_regs.py (a6xx.xml per chip generation),
pm4_a6xx.py / pm4_a7xx.py (adreno_pm4.xml). Pinned and reproducible byte for byte; tests/test_qcom_tables.py
regenerates them when the source tree is unpacked."""

"""qcomdrv on a real Qualcomm Adreno (a6xx, a7xx) through /dev/kgsl-3d0. Run on the device:
python -m pytest -q hwtests/qcom (see README.md there)."""

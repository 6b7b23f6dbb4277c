"""The IP blocks of the AM driver, each with init_sw / init_hw / fini_hw, in amdgpu's boot order for SOC21/SOC24:
soc (NBIO doorbells), gmc (hubs, GART page table, VRAM), ih, psp (firmware), smu, gfx (RLC, MEC, compute queue),
sdma. am/device.py runs them."""

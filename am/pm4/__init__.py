"""PM4 command packets for the AMD graphics/compute command processor (one emitter per packet)."""

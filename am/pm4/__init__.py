"""PM4 command packets for the AMD graphics/compute command processor (one emitter per packet).

packets.py: the PM4 layouts (one table for encode and decode); pm4.py: PM4Stream, the GFX11/GFX12 emitters;
sdma.py: SDMAStream, the SDMA 6/7 emitters; decode.py: the pretty-printers for both."""

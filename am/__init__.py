"""AM: the sovereign AMD driver (RX 7900 XTX / Navi31, RX 9070 XT / Navi48) over PCI, without amdgpu.ko.

discovery.py + caps.py: the IP-discovery table and the capabilities derived from it; device.py: AMDevice and the
boot order; ip/: the IP blocks; mmio/: the PCI seam and named registers; firmware/, pm4/: firmware and packets;
simcard/: the simulated cards presented at the PCI seam (am/sim is the RDNA wave emulator)."""

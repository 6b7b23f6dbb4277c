"""AM: the sovereign AMD driver (RX 7900 XTX / Navi31, RX 9070 XT / Navi48) over PCI, without amdgpu.ko.

Empty until the AM bring-up issue lands; the subpackages name where its parts go."""

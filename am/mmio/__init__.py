"""PCI function access for AM: sysfs, BAR mappings, named-field registers from generated tables.

regs.py: RegisterBlock / Register (write, update, read_fields, encode, decode) over one injected MMIO object
(read32/write32 at byte offsets; MemoryMMIO in tests), with the tables of am/generated/ and per-IP segment bases."""

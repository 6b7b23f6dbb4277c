"""PCI function access for AM: sysfs, BAR mappings, named-field registers from generated tables."""

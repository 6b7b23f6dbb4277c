"""Generated tables; see tools/gen_rdna_tables.py."""

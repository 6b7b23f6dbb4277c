"""Compute and SDMA queues programmed directly through MQD + HQD registers (no MES, no KIQ)."""

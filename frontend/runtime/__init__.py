"""Runtimes behind frontend.Device: each compiles a loop-level kernel for its device and runs it."""

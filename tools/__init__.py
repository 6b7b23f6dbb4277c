"""Command-line faces over Sovereign's packages: `sov` (tools/sov.py) and the scripts beside it.

Tools hold no driver, compiler or tensor logic of their own; they parse arguments, call into `frontend/`,
`compiler/` and the driver packages, and report what happened.
"""

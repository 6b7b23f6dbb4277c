"""`sov`: Sovereign's command line (console entry point `sov=tools.sov:main`).

  sov info                    the device kinds: what each available one is, why each missing one is missing;
                              the default device
  sov train-mnist [options]   train a small CNN on MNIST (tools/train_mnist.py); `sov train-mnist --help`

Exit status: 0 on success, 1 when the work could not be done (a missing package, an unavailable device, no data),
2 on bad arguments (argparse's convention), 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import sys

from frontend.device import DEVICE_PREFERENCE, Device, DeviceUnavailable
from frontend.nn.datasets import DatasetUnavailable
from tools import train_mnist


def _strip_kind(kind: str, text: str) -> str:
  """Drops a leading "KIND: " from a description or reason, since `sov info` prints the kind in its own column."""
  prefix = f"{kind}: "
  return text[len(prefix):] if text.startswith(prefix) else text


def _describe(kind: str) -> str:
  describe = getattr(Device[kind], "describe", None)
  if describe is None:
    return "(no description)"
  return _strip_kind(kind, describe())


def info(args: argparse.Namespace) -> int:
  """Prints every registered device kind with its description or the reason it is unavailable, then the default.

  Returns 1 when no default device can be had (DEV names an unknown or unavailable kind, or nothing is available).
  """
  print("device kinds:")
  for kind in Device.kinds:
    ok, reason = Device.available(kind)
    if ok:
      print(f"  {kind:<5} available    {_describe(kind)}")
    else:
      print(f"  {kind:<5} unavailable  {_strip_kind(kind, reason)}")
  env = os.environ.get("DEV")
  source = f"from DEV={env}" if env else f"DEV unset: the first available of {', '.join(DEVICE_PREFERENCE)}"
  try:
    default = Device.DEFAULT
  except (ValueError, DeviceUnavailable) as e:
    print(f"default device: none ({source}): {e}")
    return 1
  ok, reason = Device.available(default)
  if not ok:
    print(f"default device: {default} ({source}), but it is unavailable: {_strip_kind(default.split(':')[0], reason)}; "
          f"unset DEV or pick an available kind")
    return 1
  print(f"default device: {default} ({source})")
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="sov", description="Sovereign: user-space GPU drivers and a tensor runtime.")
  commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  info_parser = commands.add_parser("info", help="list device kinds and the default device",
                                    description="List the device kinds: a description of each available one, the "
                                                "reason each unavailable one is missing, and the default device.")
  info_parser.set_defaults(func=info)
  train_parser = commands.add_parser("train-mnist", help="train a small CNN on MNIST",
                                     description=train_mnist.DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  train_mnist.add_arguments(train_parser)
  train_parser.set_defaults(func=train_mnist.main_from_args)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Runs one `sov` command; returns its exit status.

  Args:
    argv: the arguments after the program name; sys.argv[1:] when None.
  """
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return args.func(args)
  except (train_mnist.TrainError, DeviceUnavailable, DatasetUnavailable) as e:
    print(f"sov {args.command}: error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"sov {args.command}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())

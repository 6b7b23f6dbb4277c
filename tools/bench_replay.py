"""Training-step replay benchmark: a TinyJit step replayed as one prebuilt command buffer, beside PyTorch eager and
PyTorch CUDA graphs on the same model in the same run.

  python tools/bench_replay.py [--device NV] [--steps 200] [--models cnn,transformer] [--profile]

Models (the same layers, initial weights and inputs on both sides; Adam, lr 1e-3):
  cnn          batch 32 of 1x28x28: conv 1->8 3x3, relu, maxpool 2, conv 8->16 3x3, relu, maxpool 2, linear 400->10,
               cross-entropy
  transformer  batch 8 x 64 tokens x 128 wide, one pre-LayerNorm block: causal 4-head attention and a 512-wide
               tanh-GELU MLP, both residual; mean squared error against a target
Measured, after warm-up steps (our capture; PyTorch's allocator warm-up and graph capture):
  steps/s      --steps steps back to back, inputs cycling through 4 batches already on the device, one synchronize
               at the end (PyTorch graphs copy each batch into the graph's static inputs, as graph replay requires);
  host us      host CPU time of one step's call with the device idle (median): what submitting a step costs Python.
"loss gap" is the largest difference between our loss and PyTorch eager's over the warm-up steps: the two sides run
the same math from the same weights, so it stays at rounding level. "ratio" is ours / theirs for steps/s (> 1: we are
faster). CUDA graphs exist on NV only (torch's CUDA device); on other devices that column says n/a.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

WARMUP, BATCHES, LR = 3, 4, 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# the models, ours and PyTorch's, and the inputs


def make_inputs(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
  rng = np.random.default_rng(0)
  if name == "cnn":
    return [(rng.standard_normal((32, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 32).astype(np.int32))
            for _ in range(BATCHES)]
  return [(rng.standard_normal((8, 64, 128)).astype(np.float32), rng.standard_normal((8, 64, 128)).astype(np.float32))
          for _ in range(BATCHES)]


class OurCNN:
  def __init__(self):
    from frontend import nn
    self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3), nn.Linear(400, 10)

  def layers(self) -> list:
    return [self.c1, self.c2, self.fc]

  def loss(self, x, y):
    h = self.c2(self.c1(x).relu().max_pool2d()).relu().max_pool2d()
    return self.fc(h.flatten(1)).sparse_categorical_crossentropy(y)


class OurBlock:
  def __init__(self, dim: int = 128, heads: int = 4):
    from frontend import nn
    self.heads = heads
    self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
    self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
    self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

  def layers(self) -> list:
    return [self.ln1, self.qkv, self.proj, self.ln2, self.up, self.down]

  def loss(self, x, target):
    b, t, d = x.shape
    q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
    a = q.scaled_dot_product_attention(k, v, is_causal=True).permute(0, 2, 1, 3).reshape(b, t, d)
    h = x + self.proj(a)
    out = h + self.down(self.up(self.ln2(h)).gelu())
    return ((out - target) ** 2).mean()


def torch_models():
  import torch
  import torch.nn.functional as F

  class CNN(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.c1, self.c2, self.fc = torch.nn.Conv2d(1, 8, 3), torch.nn.Conv2d(8, 16, 3), torch.nn.Linear(400, 10)

    def layers(self) -> list:
      return [self.c1, self.c2, self.fc]

    def loss(self, x, y):
      h = F.max_pool2d(F.relu(self.c2(F.max_pool2d(F.relu(self.c1(x)), 2))), 2)
      return F.cross_entropy(self.fc(h.flatten(1)), y.long())

  class Block(torch.nn.Module):
    def __init__(self, dim: int = 128, heads: int = 4):
      super().__init__()
      self.heads = heads
      self.ln1, self.ln2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
      self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
      self.up, self.down = torch.nn.Linear(dim, 4 * dim), torch.nn.Linear(4 * dim, dim)

    def layers(self) -> list:
      return [self.ln1, self.qkv, self.proj, self.ln2, self.up, self.down]

    def loss(self, x, target):
      b, t, d = x.shape
      q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
      a = F.scaled_dot_product_attention(q, k, v, is_causal=True).permute(0, 2, 1, 3).reshape(b, t, d)
      h = x + self.proj(a)
      out = h + self.down(F.gelu(self.up(self.ln2(h)), approximate="tanh"))
      return ((out - target) ** 2).mean()
  return {"cnn": CNN, "transformer": Block}


# ---------------------------------------------------------------------------------------------------------------------
# the two sides


def ours(name: str, device: str, steps: int) -> dict:
  from frontend import Tensor
  before = Tensor.training
  Tensor.training = True
  try:
    return _ours(name, device, steps)
  finally:
    Tensor.training = before


def _our_step(name: str, device: str):
  """(model, jitted training step, the device's batches) for our side of model `name`."""
  from frontend import Tensor, TinyJit
  from frontend.nn.optim import Adam
  from frontend.nn.state import get_parameters
  Tensor.manual_seed(0)
  model = OurCNN() if name == "cnn" else OurBlock()
  params = get_parameters(model)
  Tensor.realize(*params)
  opt = Adam(params, lr=LR)

  @TinyJit
  def step(x: Tensor, y: Tensor) -> Tensor:
    opt.zero_grad()
    loss = model.loss(x, y)
    loss.backward()
    Tensor.realize(loss, *opt.schedule_step())
    return loss
  batches = [(Tensor(x, device=device).realize(), Tensor(y, device=device).realize()) for x, y in make_inputs(name)]
  return model, step, batches


def _ours(name: str, device: str, steps: int) -> dict:
  from frontend.device import Device
  model, step, batches = _our_step(name, device)
  weights = [[(p.weight.numpy(), p.bias.numpy()) for p in model.layers()]]
  runtime = Device[device]
  losses = [float(step(*batches[i % BATCHES]).numpy()) for i in range(WARMUP)]
  runtime.synchronize()
  start = time.perf_counter()
  for i in range(steps):
    loss = step(*batches[i % BATCHES])
  runtime.synchronize()
  elapsed = time.perf_counter() - start
  host = []
  for i in range(20):
    runtime.synchronize()
    t0 = time.perf_counter()
    loss = step(*batches[i % BATCHES])
    host.append(time.perf_counter() - t0)
  runtime.synchronize()
  return {"steps_s": steps / elapsed, "host": statistics.median(host), "losses": losses, "weights": weights[0],
          "kernels": len(step.captured or []), "last": float(loss.numpy())}


def profile_host(name: str, device: str, calls: int = 200) -> None:
  """Where the host CPU time of our step's call goes (cProfile over `calls` calls, the device idle before each)."""
  import cProfile
  import pstats

  from frontend import Tensor
  from frontend.device import Device
  Tensor.training = True
  _, step, batches = _our_step(name, device)
  runtime = Device[device]
  for i in range(WARMUP):
    step(*batches[i % BATCHES])
  profiler = cProfile.Profile()
  for i in range(calls):
    runtime.synchronize()
    profiler.enable()
    step(*batches[i % BATCHES])
    profiler.disable()
  runtime.synchronize()
  print(f"{name}: host profile of {calls} step calls")
  pstats.Stats(profiler).sort_stats("tottime").print_stats(22)


def torch_side(name: str, device: str, steps: int, weights, graphs: bool) -> dict:
  import torch
  dev = "cuda" if device.startswith("NV") else "cpu"
  model = torch_models()[name]().to(dev)
  with torch.no_grad():
    for layer, (w, b) in zip(model.layers(), weights):
      layer.weight.copy_(torch.from_numpy(w))
      layer.bias.copy_(torch.from_numpy(b))
  opt = torch.optim.Adam(model.parameters(), lr=LR, capturable=graphs)
  batches = [(torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)) for x, y in make_inputs(name)]

  def sync():
    if dev == "cuda":
      torch.cuda.synchronize()

  def step(x, y):
    opt.zero_grad(set_to_none=False)
    loss = model.loss(x, y)
    loss.backward()
    opt.step()
    return loss
  res = {"losses": [float(step(*batches[i % BATCHES]).detach()) for i in range(WARMUP)]}
  run = step
  if graphs:
    static_x, static_y = torch.empty_like(batches[0][0]), torch.empty_like(batches[0][1])
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
      for i in range(WARMUP):
        static_x.copy_(batches[i % BATCHES][0])
        static_y.copy_(batches[i % BATCHES][1])
        step(static_x, static_y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
      static_loss = step(static_x, static_y)

    def run(x, y):
      static_x.copy_(x)
      static_y.copy_(y)
      graph.replay()
      return static_loss
  sync()
  start = time.perf_counter()
  for i in range(steps):
    run(*batches[i % BATCHES])
  sync()
  res["steps_s"] = steps / (time.perf_counter() - start)
  host = []
  for i in range(20):
    sync()
    t0 = time.perf_counter()
    run(*batches[i % BATCHES])
    host.append(time.perf_counter() - t0)
  sync()
  res["host"] = statistics.median(host)
  return res


# ---------------------------------------------------------------------------------------------------------------------


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--device", default=None, help="our device (default: the best available, see `sov info`)")
  parser.add_argument("--steps", type=int, default=200, help="timed steps per model and engine")
  parser.add_argument("--models", default="cnn,transformer", help="comma-separated: cnn, transformer")
  parser.add_argument("--profile", action="store_true", help="profile the host side of our step calls and stop")
  args = parser.parse_args()
  from frontend.device import Device
  device = Device.canonicalize(args.device)
  names = [n.strip() for n in args.models.split(",") if n.strip()]
  unknown = [n for n in names if n not in ("cnn", "transformer")]
  if unknown or args.steps < 1:
    parser.error(f"--models {args.models!r} (known: cnn, transformer), --steps {args.steps} (>= 1)")
  if args.profile:
    for name in names:
      profile_host(name, device)
    return
  cuda = device.startswith("NV")
  print(f"{'model':12s} {'kernels':>7s} {'ours st/s':>10s} {'eager st/s':>10s} {'ratio':>6s} {'graph st/s':>10s} "
        f"{'ratio':>6s} {'ours host us':>12s} {'eager us':>9s} {'graph us':>9s} {'loss gap':>9s}")
  for name in names:
    mine = ours(name, device, args.steps)
    eager = torch_side(name, device, args.steps, mine["weights"], graphs=False)
    graph = torch_side(name, device, args.steps, mine["weights"], graphs=True) if cuda else None
    gap = max(abs(a - b) for a, b in zip(mine["losses"], eager["losses"]))
    graph_cols = (f"{graph['steps_s']:10.1f} {mine['steps_s'] / graph['steps_s']:5.2f}x" if graph else
                  f"{'n/a':>10s} {'':>6s}")
    graph_host = f"{graph['host'] * 1e6:9.1f}" if graph else f"{'n/a':>9s}"
    print(f"{name:12s} {mine['kernels']:7d} {mine['steps_s']:10.1f} {eager['steps_s']:10.1f} "
          f"{mine['steps_s'] / eager['steps_s']:5.2f}x {graph_cols} {mine['host'] * 1e6:12.1f} "
          f"{eager['host'] * 1e6:9.1f} {graph_host} {gap:9.2e}")
  print(f"device: {Device[device].describe()}; {args.steps} timed steps per engine")


if __name__ == "__main__":
  main()

"""What the short last batch of an epoch costs a --compile training run, three ways, in one run on one machine.

    python benchmarks/ragged_compile.py                 # minutes on 2 CPU cores; the numbers in the --json file
    python benchmarks/ragged_compile.py --device cuda --size 256

A network compiled for fixed shapes (utils.compile_network: dynamic=False) is compiled again for a batch of
another size. The training step here is the transformer's part of one (forward, a loss, backward, Adam), since
only the transformer is compiled; each way is a fresh compile (torch._dynamo.reset()):

1. static, short batch as it is: the full batch's steps, then the short batch's first step (a recompile);
2. static, short batch padded to the full one (what training.FullBatches does): the padded step;
3. dynamic=True (the batch dimension symbolic): its full steps and its short step, compiled once.

Steps are timed after a warm-up, as the median of --steps runs.
"""

import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402
from style_transfer.model_files import machine_description  # noqa: E402
from style_transfer.training import FullBatches  # noqa: E402
from transformer_net import TransformerNet  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(network: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    (network(images) / 255).square().mean().backward()
    optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def way(name: str, dynamic: bool, pad: bool, full: torch.Tensor, short: torch.Tensor, steps: int,
        device: torch.device) -> dict:
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = TransformerNet().to(device).train()
    network = torch.compile(model, dynamic=dynamic)
    if pad:
        network = FullBatches(network)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first_full = timed_step(network, optimizer, full, device)  # the compile
    timed_step(network, optimizer, full, device)
    full_steps = [timed_step(network, optimizer, full, device) for _ in range(steps)]
    first_short = timed_step(network, optimizer, short, device)  # a recompile, or not
    short_steps = [timed_step(network, optimizer, short, device) for _ in range(steps)]
    result = {"way": name, "first_full_step_s": round(first_full, 3),
              "full_step_s": round(statistics.median(full_steps), 4),
              "first_short_step_s": round(first_short, 3), "short_step_s": round(statistics.median(short_steps), 4)}
    print(f"{name:36s} first full step {first_full:7.2f} s, full step {result['full_step_s']:.4f} s, "
          f"first short step {first_short:7.2f} s, short step {result['short_step_s']:.4f} s", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="where to run (default: %(default)s)")
    parser.add_argument("--size", type=utils.positive_int, default=64, help="crop size (default: %(default)s)")
    parser.add_argument("--batch-size", type=utils.positive_int, default=4, help="full batch (default: %(default)s)")
    parser.add_argument("--short", type=utils.positive_int, default=2,
                        help="the short last batch (default: %(default)s)")
    parser.add_argument("--steps", type=utils.positive_int, default=5,
                        help="timed steps per measurement (default: %(default)s)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "ragged-compile-cpu-2core.json"),
                        help="where to write the numbers (default: %(default)s)")
    args = parser.parse_args(argv)
    device = utils.choose_device(args.device)
    generator = torch.Generator().manual_seed(0)
    full = (torch.rand(args.batch_size, 3, args.size, args.size, generator=generator) * 255).to(device)
    short = full[:args.short].clone()
    ways = [way("static, short batch as it is", False, False, full, short, args.steps, device),
            way("static, short batch padded (FullBatches)", False, True, full, short, args.steps, device),
            way("dynamic=True", True, False, full, short, args.steps, device)]
    record = {"command": "python benchmarks/ragged_compile.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine_description(device), "torch": torch.__version__, "size": args.size,
              "batch_size": args.batch_size, "short_batch": args.short, "steps": args.steps, "ways": ways}
    utils.save_json(record, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)

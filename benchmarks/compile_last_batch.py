"""What a video's short last batch costs render_video.py --compile, three ways (issue 22, item 7):

- `recompile`: the compiled network meets the short batch as it is (dynamic=False): a second compilation;
- `pad`: the short batch is padded to --batch-size with copies of its last frame, the padding's outputs dropped
  (what render_video.py does): one compilation, and the padding's frames computed for nothing;
- `dynamic`: the batch dimension marked dynamic (torch._dynamo.mark_dynamic): one compilation for every batch size,
  but code that cannot assume the batch size.

    python benchmarks/compile_last_batch.py --size 160x120 --batch-size 4 --frames 10 --json benchmarks/NAME.json

Each way runs in a fresh process, with Inductor's caches in a fresh folder (nothing reused between them),
on a random TransformerNet at the precision render_video.py would choose. It reports the whole clip's time
(compilations included), the time of the first call, and the steady time per full batch after the clip.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import utils

WAYS = ["recompile", "pad", "dynamic"]


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="160x120", metavar="WxH", help="frame size (default: %(default)s)")
    parser.add_argument("--batch-size", type=utils.positive_int, default=4, metavar="N",
                        help="frames per batch (default: %(default)s)")
    parser.add_argument("--frames", type=utils.positive_int, default=10, metavar="N",
                        help="frames of the clip, not a multiple of --batch-size (default: %(default)s)")
    parser.add_argument("--ways", default=",".join(WAYS), metavar="LIST",
                        help="which ways, in this order, separated by commas; repeat them to alternate, e.g. "
                             "pad,dynamic,dynamic,pad (default: %(default)s)")
    parser.add_argument("--steady-rounds", type=utils.positive_int, default=5, metavar="N",
                        help="full batches timed after the clip (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results here (default: none)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one way in this process
    return parser


def run_one(way: str, args: argparse.Namespace) -> dict:
    import torch

    from style_transfer import rendering
    from transformer_net import TransformerNet

    width, height = map(int, args.size.split("x"))
    torch.manual_seed(0)
    device = torch.device("cpu")
    precision = utils.choose_precision("auto", device)
    model = TransformerNet().eval()
    if way == "dynamic":  # as utils.compile_network, but letting the batch dimension vary
        model = rendering.prepare_for_rendering(model, precision)
        model = torch.compile(model, dynamic=None, options={"freezing": True})
    else:
        model = rendering.prepare_for_rendering(model, precision, compile=True)
    clip = torch.rand(args.frames, 3, height, width) * 255
    calls = []
    start = time.perf_counter()
    for first in range(0, args.frames, args.batch_size):
        batch = clip[first:first + args.batch_size]
        count = len(batch)
        if way == "pad" and count < args.batch_size:
            batch = torch.cat([batch, batch[-1:].expand(args.batch_size - count, -1, -1, -1)])
        if way == "dynamic":
            torch._dynamo.mark_dynamic(batch, 0)
        began = time.perf_counter()
        rendering.stylize(model, batch, precision)[:count]
        calls.append(time.perf_counter() - began)
    total = time.perf_counter() - start
    steady = []
    for _ in range(args.steady_rounds):
        began = time.perf_counter()
        rendering.stylize(model, clip[:args.batch_size], precision)
        steady.append(time.perf_counter() - began)
    steady.sort()
    return {"way": way, "precision": precision, "clip_seconds": round(total, 2),
            "calls_seconds": [round(c, 3) for c in calls],
            "steady_batch_seconds_median": round(steady[len(steady) // 2], 4)}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    ways = args.ways.split(",")
    if unknown := set(ways) - set(WAYS):
        raise utils.UserError(f"--ways: unknown {', '.join(sorted(unknown))} (choose from {', '.join(WAYS)})")
    results = []
    for way in ways:
        with tempfile.TemporaryDirectory() as cache:
            environment = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_FX_GRAPH_CACHE": "0",
                           "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
            command = [sys.executable, __file__, "--one", way, *(argv if argv is not None else sys.argv[1:])]
            done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
            if done.returncode:
                reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode
                raise utils.UserError(f"{way}: {reason}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            result = results[-1]
            print(f"{way:>9}: clip {result['clip_seconds']:.1f} s (calls {result['calls_seconds']}), steady "
                  f"{result['steady_batch_seconds_median'] * 1000:.0f} ms per batch of {args.batch_size}", flush=True)
    if args.json:
        record = {"command": "python benchmarks/compile_last_batch.py " + " ".join(argv if argv is not None
                                                                                    else sys.argv[1:]),
                  "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  "torch": __import__("torch").__version__, "size": args.size, "batch_size": args.batch_size,
                  "frames": args.frames, "results": results}
        with utils.atomic_file(args.json) as temp:
            temp.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    utils.run_main(main)

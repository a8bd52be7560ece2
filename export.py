"""Export a trained model to ONNX, to run it without this suite: ONNX Runtime, OpenVINO, phones, the web.

    python export.py --model-path models/blend.pth --output-path blend.onnx
    python export.py --model-path styles.pth --output-path mix.onnx --style-mix 0.3,0.7
    python export.py --model-path styles.pth --output-path styles.onnx --style-input

The file takes `input`, a float32 N x 3 x H x W batch in 0-255 (RGB), and gives `output`, the same; N, H and
W are dynamic, and sizes the network does not take directly (not multiples of 4) are padded inside the graph
and cropped back. A conditional model (train.py --conditional) is exported with one style or mix baked in
(--style, --style-mix; default: its first style), or with --style-input takes the mix as a second input
`style_mix` (one weight per style, 1 x S or N x S, normalised inside the graph), so that one file mixes at run
time. The provenance JSON goes beside it (OUT.json). The file is checked with ONNX Runtime against PyTorch
before it is renamed into place (unless --no-check). See docs/export.md.
"""

import argparse
import math
from pathlib import Path

import torch

import utils
from style_transfer import model_files, onnx_export, style_choice


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--model-path", "--model", dest="model", required=True, metavar="PATH",
                        help="the model file (.pth or .model; any layout render_image.py loads)")
    parser.add_argument("--output-path", dest="output", required=True, metavar="OUT.onnx",
                        help="the ONNX file to write (its provenance goes beside it, as OUT.json)")
    style_choice.add_style_args(parser)
    parser.add_argument("--style-input", action="store_true",
                        help="conditional models: make the style weights a second graph input `style_mix` "
                             "(1 x S or N x S, normalised to sum 1 inside the graph) instead of baking one style "
                             "or mix in (default: off)")
    parser.add_argument("--fp16", action="store_true",
                        help="a half-precision file: weights and arithmetic in float16 (half the size), input "
                             "and output still float32 in 0-255 (default: off, float32)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="leave out the check that runs the written file with ONNX Runtime against PyTorch "
                             f"on a {onnx_export.CHECK_SHAPE[0]} x {onnx_export.CHECK_SHAPE[3]}x"
                             f"{onnx_export.CHECK_SHAPE[2]} batch (PSNR of at least "
                             f"{onnx_export.MIN_PSNR_DB[False]:g} dB, {onnx_export.MIN_PSNR_DB[True]:g} dB with "
                             "--fp16) before it is renamed into place (default: checked; needs onnxruntime)")
    return parser


def check_output(path: Path) -> None:
    if path.suffix.lower() != ".onnx":
        raise utils.UserError(f"--output-path: {path} does not end in .onnx (its provenance is written beside it "
                              "as .json)")
    if path.is_dir():
        raise utils.UserError(f"--output-path: {path} is a folder (name the .onnx file to write)")


def main(argv: list[str] | None = None) -> None:
    if style_choice.list_styles_if_asked(argv):
        return
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    check_output(output)
    onnx_export.require_exporter()
    if args.check:
        onnx_export.require_runtime()
    model = model_files.load_transformer(args.model)
    kind = onnx_export.model_kind(model)
    mix = chosen_mix(args, model, kind)
    graph = onnx_export.export_graph(model, mix, args.style_input, args.fp16)
    names = style_choice.style_names(model)
    facts = {"kind": kind, "style_names": names if kind == "conditional" else None,
             "style_mix": None if args.style_input else mix, "style_input": args.style_input,
             "fp16": args.fp16, "opset": onnx_export.OPSET}
    provenance = {"script": "export.py", "command": model_files.command_line("export.py", argv),
                  "model": str(args.model), "model_provenance": model_files.read_provenance(args.model), **facts,
                  "input": "input: float32 N x 3 x H x W, RGB in 0-255; N, H, W dynamic",
                  "output": "output: float32 N x 3 x H x W, RGB in 0-255 (clip to 0-255 before saving)",
                  "odd_sizes": "padded inside the graph (replicated edges) to multiples of 4, at least 8, cropped back",
                  "torch": torch.__version__, "machine": model_files.machine_description(torch.device("cpu"))}
    with utils.atomic_file(output) as temp:  # renamed into place only once written and checked
        onnx_export.write_onnx(graph, temp, len(names))
        onnx_export.add_metadata(temp, {**facts, "source_model": Path(args.model).name})
        provenance["check"] = check(args, temp, model, mix)
    utils.save_json(provenance, model_files.provenance_path(output))
    quality = provenance["check"]
    print(f"wrote {output} ({kind}{', style_mix as an input' if args.style_input else ''}"
          f"{', fp16' if args.fp16 else ''}; opset {onnx_export.OPSET})"
          + (f"; ONNX Runtime matches PyTorch's fp32 render: {_quality(quality)}" if quality else ""))


def _quality(check: dict) -> str:
    return "identical" if check["identical"] else f"{check['psnr_db']:.1f} dB PSNR"


def chosen_mix(args: argparse.Namespace, model: torch.nn.Module, kind: str) -> list[float] | None:
    """The mix to bake in (None with --style-input), checked against the model as render_image.py checks it."""
    if not args.style_input:
        return style_choice.chosen_mix(args, model, args.model)
    if kind != "conditional":
        raise utils.UserError(f"--style-input: {args.model} is a plain model with one style; a style input needs a "
                              "conditional model (train.py --conditional or distillation.py --conditional)")
    if args.style is not None or args.style_mix is not None:
        raise utils.UserError("give either --style-input (the mix chosen at run time) or --style / --style-mix "
                              "(baked in), not both")
    return None


def check(args: argparse.Namespace, path: Path, model: torch.nn.Module, mix: list[float] | None) -> dict | None:
    if not args.check:
        return None
    import onnxruntime

    quality = onnx_export.check_with_runtime(path, model, mix, args.style_input, args.fp16)
    return {"runtime": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)",
            "shape": list(onnx_export.CHECK_SHAPE), "psnr_db": round(quality, 2) if math.isfinite(quality) else None,
            "identical": not math.isfinite(quality)}


if __name__ == "__main__":
    utils.run_main(main)

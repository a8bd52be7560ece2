"""Export a trained model to ONNX, to run it without this suite: ONNX Runtime, OpenVINO, phones, the web.

    python export.py --model-path models/blend.pth --output-path blend.onnx
    python export.py --model-path styles.pth --output-path mix.onnx --style-mix 0.3,0.7
    python export.py --model-path styles.pth --output-path styles.onnx --style-input

The file takes `input`, a float32 N x 3 x H x W batch in 0-255 (RGB), and gives `output`, the same; N, H and
W are dynamic, and sizes the network does not take directly (not multiples of 4) are padded inside the graph
and cropped back. A conditional model (train.py --conditional) is exported with one style or mix baked in
(--style, --style-mix; default: its first style), or with --style-input takes the mix as a second input
`style_mix` (one weight per style, 1 x S or N x S, normalised inside the graph), so that one file mixes at run
time. An arbitrary-style model (train.py --arbitrary) gives two files: OUT.onnx takes the style as a second input
`style_params` (the predicted scales and shifts, 1 x P or N x P), and OUT.predictor.onnx makes them from a
picture (`style_image`, 1 x 3 x H x W in 0-255, its shorter side at the model's style size; the loss network
inside). The provenance JSON goes beside it (OUT.json). The files are checked with ONNX Runtime against PyTorch
before they are renamed into place (unless --no-check). See docs/export.md.

    python export.py --model-path models/any-style.pth --output-path any-style.onnx
"""

import argparse
import math
from pathlib import Path

import torch

import utils
from style_transfer import model_files, onnx_export, style_choice
from style_transfer.arbitrary_net import check_loss_network


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
    model = model_files.load_transformer(args.model, arbitrary=True)
    kind = onnx_export.model_kind(model)
    if kind == "arbitrary":
        export_arbitrary(args, model, output, argv)
        return
    mix = chosen_mix(args, model, kind)
    graph = onnx_export.export_graph(model, mix, args.style_input, args.fp16)
    names = style_choice.style_names(model)
    facts = {"kind": kind, "style_names": names if kind == "conditional" else None,
             "style_mix": None if args.style_input else mix, "style_input": args.style_input,
             "fp16": args.fp16, "opset": onnx_export.OPSET}
    provenance = base_provenance(args, argv, facts, "input: float32 N x 3 x H x W, RGB in 0-255; N, H, W dynamic")
    with utils.atomic_file(output) as temp:  # renamed into place only once written and checked
        onnx_export.write_onnx(graph, temp, len(names))
        onnx_export.add_metadata(temp, {**facts, "source_model": Path(args.model).name})
        provenance["check"] = check(args, temp, model, mix)
    utils.save_json(provenance, model_files.provenance_path(output))
    report(f"wrote {output} ({kind}{', style_mix as an input' if args.style_input else ''}"
           f"{', fp16' if args.fp16 else ''}; opset {onnx_export.OPSET})", provenance["check"])


def base_provenance(args: argparse.Namespace, argv: list[str] | None, facts: dict, inputs: str) -> dict:
    """What every exported file's JSON records: the command, the source model, the graph's facts and contract."""
    return {"script": "export.py", "command": model_files.command_line("export.py", argv),
            "model": str(args.model), "model_provenance": model_files.read_provenance(args.model), **facts,
            "input": inputs, "output": "output: float32 N x 3 x H x W, RGB in 0-255 (clip to 0-255 before saving)",
            "odd_sizes": "padded inside the graph (replicated edges) to multiples of 4, at least 8, cropped back",
            "torch": torch.__version__, "machine": model_files.machine_description(torch.device("cpu"))}


def report(line: str, check_result: dict | None) -> None:
    print(line + (f"; ONNX Runtime matches PyTorch's fp32 render: {_quality(check_result)}" if check_result else ""))


def export_arbitrary(args: argparse.Namespace, model: torch.nn.Module, output: Path, argv: list[str] | None) -> None:
    """An arbitrary-style model's two files, the network (style_params an input) and its predictor."""
    if args.style is not None or args.style_mix is not None:
        raise utils.UserError(f"--style / --style-mix: {args.model} is an arbitrary-style model, whose styles come "
                              f"from pictures at run time ({onnx_export.predictor_path(output).name} makes them); to "
                              "bake pictures in, save them as a conditional model first (render_image.py "
                              "--style-image A.jpg,B.jpg --save-conditional OUT.pth) and export that")
    from style_transfer.loss_network import load_loss_network  # torchvision's VGG16: imported only where needed

    loss_network = load_loss_network(model.loss_network)
    check_loss_network(model, loss_network, model.loss_network, args.model)
    predictor = onnx_export.predictor_path(output)
    facts = {"kind": "arbitrary", "style_input": "style_params", "fp16": args.fp16, "opset": onnx_export.OPSET,
             "predictor": predictor.name, "loss_network": model.loss_network, "style_size": model.style_size}
    provenance = base_provenance(args, argv, facts, inputs="input: float32 N x 3 x H x W, RGB in 0-255; N, H, W "
                                 "dynamic; style_params: float32 1 x P or N x P, the predictor's output")
    provenance["predictor_input"] = (f"style_image: float32 1 x 3 x H x W, RGB in 0-255, the shorter side scaled to "
                                     f"{model.style_size}")
    with utils.atomic_file(predictor) as predictor_temp, utils.atomic_file(output) as temp:
        onnx_export.write_predictor(model, loss_network, predictor_temp)
        onnx_export.add_metadata(predictor_temp, {**facts, "source_model": Path(args.model).name})
        onnx_export.write_onnx(onnx_export.export_graph(model, None, True, args.fp16), temp, 1)
        onnx_export.add_metadata(temp, {**facts, "source_model": Path(args.model).name})
        if args.check:
            params = onnx_export.check_predictor(predictor_temp, model, loss_network)
            provenance["check"] = {**check(args, temp, model, None, params), "predictor": "matches PyTorch's"}
    utils.save_json(provenance, model_files.provenance_path(output))
    report(f"wrote {output} and {predictor} (arbitrary style: style_params as an input, made by the predictor from "
           f"a picture{'; fp16' if args.fp16 else ''}; opset {onnx_export.OPSET})", provenance.get("check"))


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


def check(args: argparse.Namespace, path: Path, model: torch.nn.Module, mix: list[float] | None,
          style_params: torch.Tensor | None = None) -> dict | None:
    """ONNX Runtime against PyTorch on the written file (None with --no-check); an arbitrary model with the
    predicted `style_params`."""
    if not args.check:
        return None
    import onnxruntime

    style_input = args.style_input or style_params is not None
    quality = onnx_export.check_with_runtime(path, model, mix, style_input, args.fp16, style_params)
    return {"runtime": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)",
            "shape": list(onnx_export.CHECK_SHAPE), "psnr_db": round(quality, 2) if math.isfinite(quality) else None,
            "identical": not math.isfinite(quality)}


if __name__ == "__main__":
    utils.run_main(main)

"""The suite's internals: training loop, checkpoints, data, logs, model files, image and video I/O,
rendering, tiling, temporal coherence, the conditional network, style choice and the loss network.

The scripts at the top level (train.py, render_image.py, ...) import from here; this package builds
on the original suite's three base modules (transformer_net.py, vgg.py, utils.py), which import
nothing of it, and it never imports a script. Each module's opening docstring says what it owns.
"""

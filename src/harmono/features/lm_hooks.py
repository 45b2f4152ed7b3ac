"""Hook points of causal language models: where a token's activation is read, by name.

A hook point is ``SITE.L`` for block ``L`` (0-based; negative counts from the
last block) and one of three sites, found in the model by its layout:

- ``resid``: the residual stream after the block; the output of ``blocks.L`` (harmono GPT),
  ``transformer.h.L`` (Hugging Face GPT-2) or ``model.layers.L`` (Llama-style models);
- ``mlp``: the MLP's hidden layer after its nonlinearity; the input of ``...L.mlp.c_proj``
  (``...L.mlp.down_proj`` for Llama-style models);
- ``attn``: the attention output before it joins the residual stream; the output of ``...L.attn``
  (``...L.self_attn``).

Any other module is named directly: ``module:PATH`` reads its output,
``module-input:PATH`` its first input. ``capture`` runs the model until that
point only (the forward stops there), so an early layer costs only the layers
before it. ``replacing`` swaps the activation there for another (an SAE's
reconstruction) while the forward pass runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

SITES = ("resid", "mlp", "attn")
LAYOUTS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "harmono-gpt": (
        "blocks",
        {"resid": ("", "output"), "mlp": (".mlp.c_proj", "input"), "attn": (".attn", "output")},
    ),
    "gpt2": (
        "transformer.h",
        {"resid": ("", "output"), "mlp": (".mlp.c_proj", "input"), "attn": (".attn", "output")},
    ),
    "llama": (
        "model.layers",
        {"resid": ("", "output"), "mlp": (".mlp.down_proj", "input"), "attn": (".self_attn", "output")},
    ),  # fmt: skip
}
"""Layout name -> (the blocks' module list, site -> (path below block L, output or input))."""


@dataclass(frozen=True)
class HookPoint:
    """A resolved hook point: the module, and whether its output or its first input is read."""

    name: str
    """As given, e.g. ``resid.3``."""
    path: str
    """The module's dotted path in the model."""
    reads: str
    """``output`` or ``input``."""


def layout_of(model: nn.Module) -> str | None:
    """The name of ``model``'s layout in ``LAYOUTS``, or None when it has none of them."""
    for name, (blocks, _) in LAYOUTS.items():
        try:
            module = model.get_submodule(blocks)
        except AttributeError:
            continue
        if isinstance(module, nn.ModuleList):
            return name
    return None


def resolve_hook(model: nn.Module, hook: str) -> HookPoint:
    """The ``HookPoint`` that ``hook`` names in ``model``.

    Raises
    ------
    ValueError
        ``hook`` is not ``SITE.L`` or ``module[-input]:PATH``, the block does not exist, or the model has
        no known layout for a site (name the module instead).
    """
    for prefix, reads in (("module:", "output"), ("module-input:", "input")):
        if hook.startswith(prefix):
            path = hook[len(prefix) :]
            _module(model, path, hook)
            return HookPoint(hook, path, reads)
    site, _, block = hook.partition(".")
    if site not in SITES or not block.lstrip("-").isdigit():
        raise ValueError(f"expected a hook point SITE.L with SITE in {SITES} (e.g. resid.3), or "
                         f"module:PATH / module-input:PATH, got {hook!r}")  # fmt: skip
    layout = layout_of(model)
    if layout is None:
        raise ValueError(f"{type(model).__name__} has none of the layouts {sorted(LAYOUTS)}: name the module "
                         f"to read instead (module:PATH or module-input:PATH), got {hook!r}")  # fmt: skip
    blocks_path, sites = LAYOUTS[layout]
    blocks = model.get_submodule(blocks_path)
    index = int(block)
    if not -len(blocks) <= index < len(blocks):
        raise ValueError(f"expected a block in [0, {len(blocks)}) (or a negative index), got {hook!r}")
    suffix, reads = sites[site]
    path = f"{blocks_path}.{index % len(blocks)}{suffix}"
    _module(model, path, hook)
    return HookPoint(hook, path, reads)


def _module(model: nn.Module, path: str, hook: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise ValueError(
            f"expected a module at {path!r} of {type(model).__name__} for {hook!r}: {err}"
        ) from None


class _Captured(Exception):
    """Raised by the hook to stop the forward pass once the activation is read."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value


def capture(model: nn.Module, point: HookPoint, run: Callable[[], object]) -> torch.Tensor:
    """The activation at ``point`` while ``run()`` runs ``model`` (the rest of the forward is skipped).

    Returns
    -------
    torch.Tensor
        ``(B, T, d)``: the module's output (the first element of a tuple) or first input, detached.

    Raises
    ------
    RuntimeError
        ``run`` finished without passing through the module.
    """
    module = model.get_submodule(point.path)

    def read(value: object) -> None:
        tensor = value[0] if isinstance(value, (tuple, list)) else value
        raise _Captured(tensor.detach())

    if point.reads == "output":
        handle = module.register_forward_hook(lambda _m, _args, output: read(output))
    else:
        handle = module.register_forward_pre_hook(lambda _m, args: read(args))
    try:
        run()
    except _Captured as captured:
        return captured.value
    finally:
        handle.remove()
    raise RuntimeError(
        f"the forward pass of {type(model).__name__} did not reach {point.path} ({point.name})"
    )


@contextmanager
def replacing(
    model: nn.Module, point: HookPoint, change: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Within the block, the activation at ``point`` is replaced by ``change(activation)`` in every forward.

    ``change`` maps ``(B, T, d)`` to the same shape (e.g. an SAE's reconstruction, or zeros); the
    rest of the forward pass runs on the replacement.
    """
    module = model.get_submodule(point.path)

    def swap(value: object) -> object:
        if isinstance(value, tuple):
            return (change(value[0]), *value[1:])
        return change(value)

    if point.reads == "output":
        handle = module.register_forward_hook(lambda _m, _args, output: swap(output))
    else:
        handle = module.register_forward_pre_hook(lambda _m, args: swap(tuple(args)))
    try:
        yield
    finally:
        handle.remove()

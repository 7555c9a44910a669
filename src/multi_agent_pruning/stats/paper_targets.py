"""Published pruning results that the validator tries to reproduce, with where each number comes from.

Accuracies are fractions in [0, 1] (as in the results table), MACs and params are absolute counts.
``verified`` says whether the numbers *and* the base model were checked against the paper text or the
authors' official repository when this table was written; ``note`` says what was checked and what
disagrees. See docs/reports.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from multi_agent_pruning.exceptions import UnknownNameError

__all__ = ["PaperSource", "PaperTarget", "PAPER_TARGETS", "get_paper_target", "list_paper_targets",
           "targets_for"]


@dataclass(frozen=True)
class PaperSource:
    """Bibliographic source of a published number.

    Attributes:
        title: Paper title.
        venue: Conference or journal.
        year: Publication year.
        arxiv_id: arXiv identifier.
        table: Which table or listing the numbers were read from.
        url: Where that table can be read.
    """

    title: str
    venue: str
    year: int
    arxiv_id: str
    table: str
    url: str


@dataclass(frozen=True)
class PaperTarget:
    """One published pruned model: what was pruned, to what size, with what accuracy.

    Attributes:
        name: Short key of the target, e.g. ``isomorphic_deit_4.2g``.
        paper: Short name of the paper (``Isomorphic Pruning``, ``DepGraph``).
        model: The paper's label of the pruned model.
        base_model: Model registry name of the dense model it was pruned from.
        dataset: Dataset registry name.
        macs: MACs of the pruned model (one image); None when the paper gives a speed-up instead.
        params: Parameters of the pruned model; None when not published.
        top1: Published top-1 accuracy of the pruned model (fraction).
        base_top1: Published top-1 accuracy of the dense model (fraction); None when not recorded.
        speedup: Dense MACs / pruned MACs when that is how the paper states the budget.
        source: Where the numbers come from.
        verified: True when numbers and base model were checked against the paper or the
            authors' official repository.
        note: What was checked, and any disagreement between sources.
        base_macs: MACs of the dense model as published; None when not recorded.
        base_params: Parameters of the dense model as published; None when not recorded.
        model_aliases: Other registry names whose rows also count as this base model.
    """

    name: str
    paper: str
    model: str
    base_model: str
    dataset: str
    macs: float | None
    params: float | None
    top1: float
    base_top1: float | None
    speedup: float | None
    source: PaperSource
    verified: bool
    note: str = ""
    base_macs: float | None = None
    base_params: float | None = None
    model_aliases: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        """Registry names whose result rows are compared with this target."""
        return (self.base_model, *self.model_aliases)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict of every field."""
        data = asdict(self)
        data["model_aliases"] = list(self.model_aliases)
        return data


_ISOMORPHIC = PaperSource(
    title="Isomorphic Pruning for Vision Models", venue="ECCV", year=2024, arxiv_id="2407.04616",
    table="Pruned-model table of the authors' README (github.com/VainF/Isomorphic-Pruning); "
          "the paper's own table was not read",
    url="https://github.com/VainF/Isomorphic-Pruning")
_DEPGRAPH = PaperSource(
    title="DepGraph: Towards Any Structural Pruning", venue="CVPR", year=2023, arxiv_id="2301.12900",
    table="ResNet-56 / CIFAR-10 table ('Ours-Group') of the authors' Torch-Pruning README; "
          "the paper's own table was not read",
    url="https://github.com/VainF/Torch-Pruning")

_DEIT_BASE = dict(paper="Isomorphic Pruning", base_model="deit_base", dataset="imagenet", base_top1=0.818,
                  base_macs=17.58e9, base_params=86.6e6, speedup=None, source=_ISOMORPHIC,
                  model_aliases=("deit_base_distilled",))
_DISTILLED = ("The authors' pruning scripts start from deit_base_distilled_patch16_224 (17.69 G MACs, 87.34 M "
              "params as printed in their README), the distilled variant of the DeiT-Base reference "
              "(17.58 G, 86.6 M, 81.8 %) recorded here; rows of either model are matched.")

PAPER_TARGETS: tuple[PaperTarget, ...] = (
    PaperTarget(name="isomorphic_deit_4.2g", model="DeiT-4.2G", macs=4.16e9, params=20.69e6, top1=0.8241,
                verified=True, note="Numbers match the README table; base from scripts/pruning/deit_4.2G.sh. "
                + _DISTILLED, **_DEIT_BASE),
    PaperTarget(name="isomorphic_deit_2.6g", model="DeiT-2.6G", macs=2.61e9, params=13.07e6, top1=0.8113,
                verified=True, note="Numbers match the README table; base from scripts/pruning/deit_2.6G.sh. "
                + _DISTILLED, **_DEIT_BASE),
    PaperTarget(name="isomorphic_deit_1.2g", model="DeiT-1.2G", macs=1.21e9, params=5.74e6, top1=0.7750,
                verified=True, note="The paper's abstract states 77.50 % 'by pruning an off-the-shelf DeiT-Base "
                "model'. The authors' script scripts/pruning/deit_1.2G.sh however prunes "
                "deit_small_distilled_patch16_224.", **_DEIT_BASE),
    PaperTarget(name="isomorphic_deit_0.6g", model="DeiT-0.6G", macs=0.62e9, params=3.08e6, top1=0.7260,
                verified=False, note="Base model recorded as stated in the task (DeiT-Base), not verified "
                "against the paper's table; the authors' script scripts/pruning/deit_0.6G.sh prunes "
                "deit_tiny_distilled_patch16_224.", **_DEIT_BASE),
    PaperTarget(name="isomorphic_convnext_8.5g", paper="Isomorphic Pruning", model="ConvNext-S-8.5G",
                base_model="convnext_base", dataset="imagenet", macs=8.48e9, params=47.36e6, top1=0.8317,
                base_top1=None, speedup=None, source=_ISOMORPHIC, verified=True,
                note="Numbers match the README table; scripts/pruning/convnext_8.5G.sh prunes convnext_base.fb_in1k."),
    PaperTarget(name="isomorphic_convnext_4.2g", paper="Isomorphic Pruning", model="ConvNext-T-4.2G",
                base_model="convnext_base", dataset="imagenet", macs=4.19e9, params=25.32e6, top1=0.8219,
                base_top1=None, speedup=None, source=_ISOMORPHIC, verified=False, model_aliases=("convnext_small",),
                note="The task text names ConvNeXt-Small as the base, but the authors' script "
                "scripts/pruning/convnext_4.2G.sh prunes convnext_base.fb_in1k (with --remove-layers 18); "
                "rows of either model are matched. The abstract gives 82.18 %, the README 82.19 %."),
    PaperTarget(name="depgraph_resnet56_cifar10", paper="DepGraph", model="ResNet-56 (Ours-Group)",
                base_model="resnet56", dataset="cifar10", macs=None, params=None, top1=0.9377, base_top1=0.9353,
                speedup=2.13, source=_DEPGRAPH, verified=False,
                note="93.53 -> 93.77 % at 2.13x is the Torch-Pruning README's figure; a later paper quoting "
                "DepGraph's table lists the same accuracies at 2.11x. The CIFAR ResNet-56 is not in the "
                "model registry."),
)

_BY_NAME = {target.name: target for target in PAPER_TARGETS}


def list_paper_targets() -> list[str]:
    """Names of the recorded paper targets, in table order."""
    return [target.name for target in PAPER_TARGETS]


def get_paper_target(name: str) -> PaperTarget:
    """The target called ``name``.

    Raises:
        UnknownNameError: No such target; the message suggests close names.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownNameError("paper target", name, list(_BY_NAME)) from None


def targets_for(model: str, dataset: str) -> list[PaperTarget]:
    """Targets whose base model (or an alias) is ``model`` on ``dataset``."""
    return [target for target in PAPER_TARGETS if model in target.models and target.dataset == dataset]

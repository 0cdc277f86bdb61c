"""What an explanation explains: targets, from a class index to any score of the model's output.

Every method takes its target through the same ``targets`` argument. It can be

* ``None``: the predicted class of each input (the arg-max of a (N, K) output);
* class indices: an ``int`` (the same class for every input), a sequence of ints or an integer
  tensor (one class per input), explained with the method's ``score=`` (``"softmax"``,
  ``"sigmoid"`` or ``"logit"``);
* class names: a string (``"tabby"``), a list of them, or :class:`ClassName`, looked up in the
  model's class list (models from :func:`sise.models.loading.load_model` have one; give another
  model its names with :func:`set_class_names`) and then explained as class indices;
* a **callable** ``target(output) -> (N,)``: any score of the model's output (a
  :class:`Target` below, or your own function);
* a sequence of callables, one per input (as pytorch-grad-cam's lists of target objects).

The contract of a callable target
---------------------------------
``target(output)`` receives the model's output for a batch of B inputs, exactly as the model
returned it (a (B, K) tensor for a classifier, (B, C, H, W) for a segmentation network, or
whatever the model returns), and returns a (B,) floating tensor: one score per row.

* **Row by row.** Score ``i`` must depend on row ``i`` of the output only (no normalisation over
  the batch such as ``output.softmax(dim=0)``): the methods pack masked copies of several
  images into one batch, and sum the scores of a batch before differentiating them.
* **The same function for every row**, unless you give one callable per input: a plain
  callable is applied to the outputs of all images alike. The ready-made targets below hold one
  class (or mask) per image and know which rows belong to which image (:meth:`Target.rows`).
* **Differentiable** for the methods that take gradients: SISE (its feature-map selection uses
  ``∂target/∂A``), Grad-CAM, Grad-CAM++, FullGrad, Integrated Gradients and Extremal
  Perturbation (which optimises its masks for the target). Use torch operations on ``output``;
  ``.item()``, NumPy or ``argmax`` give no gradient, and these methods then raise an error.
* **Plain scores** are all that the masked forward passes use: SISE's and Score-CAM's masked
  inputs, RISE's random masks and Extremal Perturbation's final mask scores call the target
  under ``torch.no_grad()`` on the outputs of the masked inputs.
* **Finite**: a NaN or infinite score on the clean inputs is refused.

How targets and ``score=`` interact
-----------------------------------
``score=`` (a method's constructor argument) only says how *class indices* become a score: an
index ``c`` is :class:`ClassScore` ``(c, score)``. A callable carries its own score and ``score=``
does not change it. Two methods treat class targets specially: Grad-CAM++ uses its exponential
trick (``Y = Ψ``) for a probability (:attr:`Target.exponential`) and ``Y = exp(S)`` for anything
else, and Extremal Perturbation optimises a class target in its ``reward`` form (the logit by
default, see :class:`sise.methods.ExtremalPerturbation`) while it optimises a custom callable as
it is. The explanation's ``targets`` field holds each input's class for class targets and ``-1``
for a callable that explains no single class.
"""

from sise.targets.class_names import ClassName, class_names_of, names_to_indices, set_class_names
from sise.targets.ready_made import ClassScore, Margin, SegmentationRegion
from sise.targets.resolve import (
    FunctionTarget,
    PerImage,
    TargetSpec,
    resolve_target,
    resolve_targets,
)
from sise.targets.target import Target, checked_scores, first_rows, target_scores

__all__ = [
    "ClassName",
    "ClassScore",
    "FunctionTarget",
    "Margin",
    "PerImage",
    "SegmentationRegion",
    "Target",
    "TargetSpec",
    "checked_scores",
    "class_names_of",
    "first_rows",
    "names_to_indices",
    "resolve_target",
    "resolve_targets",
    "set_class_names",
    "target_scores",
]

"""What each study's figures show and what to look for: the caption under every figure on the page.

A study may put its own `captions` ({file name: text}) into results.json; where it does not, the
report falls back to this table, keyed by study and file stem. A figure found in neither gets a
caption made from its name, never the bare file name.
"""

from __future__ import annotations

from pathlib import Path

BANDS = "Lines are means over seeds with 95% bands while every seed runs; thin lines are single seeds."
CONFUSION = ("Confusion matrices summed over seeds, rows normalised (percent of each true class), train above "
             "test. Look for mass off the diagonal: which classes are confused, and whether test confuses more.")

CAPTIONS: dict[str, dict[str, str]] = {
    "optimizers": {
        "loss_curves": "Training loss per epoch, one panel per update rule, on one shared log scale. " + BANDS
                       + " Look for which rule falls fastest and lowest, and which ones stall.",
        "all_rules": "The same curves overlaid: the rules ranked by how quickly the loss falls. " + BANDS,
        "confusion": CONFUSION,
        "ordering": "Per-sample loss within the first epoch with samples in class order versus shuffled (dotted: class "
                    "boundaries). Look for the saw-tooth of class order: the model chases each class in turn.",
    },
    "normalization": {
        "loss_curves": "Training loss per epoch; columns are normalizations, rows stop-rule thresholds; one shared log "
                       "scale. " + BANDS + " Look for how many epochs each needs before the loss flattens.",
        "all_conditions": "The normalizations overlaid at each threshold until the stop rule. " + BANDS,
        "confusion": CONFUSION,
        "overfitting": "Left: train minus test accuracy (mean, 95% CI). Right: every run's train against test accuracy, "
                       "jittered slightly so runs at 100% stay visible. Points below the diagonal over-fit.",
        "equal_epochs": "Train and test accuracy at equal epoch budgets (dotted lines) on a log epoch axis. Look for "
                        "whether the normalized nets are ahead early and whether the gap closes later.",
    },
    "pretraining": {
        "aann_reconstruction": "Reconstruction loss of each auto-associative network while it pre-trains its layers. "
                               + BANDS + " Look for each stage reaching a low, flat loss.",
        "finetune_loss": "Fine-tuning loss, pre-trained versus randomly initialised, one panel per fraction of labels, "
                         "on one shared scale. " + BANDS + " Look for a head start of the pre-trained network.",
        "label_fractions": "Left: test accuracy against the fraction of training labels (mean, 95% CI). Right: the "
                           "benefit of pre-training, pre-trained minus control. Look for a benefit that grows as labels "
                           "get scarce; an interval across zero means no measurable benefit.",
        "confusion": CONFUSION,
    },
    "function-fit": {
        "loss_curves": "Training MSE per epoch for each target function, models of equal parameter count. " + BANDS
                       + " Seeds that end far apart are drawn one line each. Look for which depth reaches the lowest MSE.",
        "predictions": "Test predictions against the ground truth (dashed). Look for where each model misses: the "
                       "oscillations of f1, the jumps of f2.",
    },
    "image-depth": {
        "training_curves": "Loss, training accuracy and test accuracy per epoch for the shallow and deep CNN and MLP of "
                           "equal parameter counts. " + BANDS + " Look for whether depth helps within each family.",
        "test_accuracy": "Final test accuracy per model (mean, 95% CI over seeds). Overlapping intervals mean no "
                         "measurable difference.",
        "confusion": CONFUSION,
    },
    "weight-trajectory": {
        "trajectories": "The weights' path during training, projected on one PCA plane fitted to all seeds (o start, "
                        "* end; labels: training accuracy at a few snapshots). Look for whether seeds take similar "
                        "directions and how far the first layer moves compared with the whole model.",
        "snapshot_accuracy": "Training accuracy at each snapshot of the trajectories. " + BANDS,
    },
    "grad-norm": {
        "loss_and_grad_norm": "Mini-batch loss (top) and gradient norm (bottom) at every iteration. " + BANDS
                              + " Look for the gradient norm rising while the loss still falls.",
        "combined": "Loss and gradient norm per epoch on their own y axes, as in report B. " + BANDS,
    },
    "minimal-ratio": {
        "minimal_ratio_vs_loss": "Each run at its near-critical point: training loss against the minimal ratio (share "
                                 "of positive Hessian eigenvalues); crosses did not reach the gradient tolerance. Look "
                                 "for a trend: lower loss with a higher minimal ratio.",
    },
    "loss-surface": {
        "contours": "Log training loss on two planes through the trained solution (*): random filter-normalized "
                    "directions, and the PCA plane of the training path (white). Look for a single basin around *.",
        "surfaces_3d": "The same two planes as surfaces, the training trajectory lifted onto the PCA surface (black). "
                       "Look for the path descending into the basin.",
        "radial_profile": "Mean training loss on rings of growing distance from the solution (dotted: the radius the "
                          "check uses). " + BANDS + " Look for a steady rise: the solution sits in a basin.",
    },
    "random-labels": {
        "curves": "Training and test loss and accuracy with true versus randomly permuted labels (dotted: chance and "
                  "the accuracy thresholds). " + BANDS + " Look for random labels being fitted, slowly, at chance test "
                  "accuracy.",
        "epochs_to_threshold": "Epochs needed to reach each training accuracy (mean, 95% CI over the seeds that "
                               "reached it). Look for how much longer random labels take.",
    },
    "params-generalization": {
        "by_params": "Loss, accuracy and the train-test gaps against the number of parameters (mean, 95% CI). Look "
                     "for test accuracy levelling off while training keeps improving.",
        "training_loss": "Training loss per epoch of every model, colours from small to large. " + BANDS,
    },
    "interpolation": {
        "interpolation": "Loss and accuracy along the straight line between the small-batch (α = 0) and large-batch "
                         "(α = 1) solutions; circles are the trained models themselves. Look for the barrier between "
                         "them and which side of it is flatter.",
        "training_loss": "Training loss of the two endpoints. " + BANDS,
    },
    "sensitivity": {
        "by_batch_size": "Loss, accuracy, sharpness and input sensitivity against batch size (mean, 95% CI). Look for "
                         "larger batches going with sharper, more sensitive, worse-generalizing models.",
        "training_loss": "Training loss per batch size. " + BANDS,
    },
}


def caption(study: str, name: str, given: dict | None = None) -> str:
    """The caption for figure file `name` of `study`: the study's own, this table's, or one made from the name."""
    if given and given.get(name):
        return given[name]
    stem = Path(name).stem
    if given and given.get(stem):
        return given[stem]
    return CAPTIONS.get(study, {}).get(stem) or f"{stem.replace('_', ' ').capitalize()} of the {study} study."

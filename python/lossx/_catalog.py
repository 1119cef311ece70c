"""The one list of lossx's public losses. Tests, the benchmarks and the
package's __all__ derive from it; adding a loss means one entry here.

Each entry: name -> (family, differentiable inputs in argument order).
"""
CATALOG = {
    # row-softmax family (csrc/cpu/softmax.cc, cuda/softmax.cu)
    "cross_entropy": ("softmax", ("input", "target")),  # target differentiable when probabilities
    "nll_loss": ("softmax", ("input",)),
    "log_softmax": ("softmax", ("input",)),
    "logsumexp": ("softmax", ("input",)),
    # pointwise family (csrc/cpu/pointwise.cc, cuda/pointwise.cu; list: csrc/lossx/pointwise_losses.def)
    "l1_loss": ("pointwise", ("input", "target")),
    "mse_loss": ("pointwise", ("input", "target")),
    "smooth_l1_loss": ("pointwise", ("input", "target")),
    "huber_loss": ("pointwise", ("input", "target")),
    "binary_cross_entropy_with_logits": ("pointwise", ("input", "target")),
    "soft_margin_loss": ("pointwise", ("input", "target")),
    "binary_cross_entropy": ("pointwise", ("input", "target")),
    "kl_div": ("pointwise", ("input", "target")),
    "poisson_nll_loss": ("pointwise", ("input", "target")),
    "gaussian_nll_loss": ("pointwise", ("input", "target", "var")),
    "hinge_embedding_loss": ("pointwise", ("input",)),  # target +-1, not differentiable
    "sigmoid_focal_loss": ("pointwise", ("inputs", "targets")),  # torchvision's names and defaults
    "margin_ranking_loss": ("pointwise", ("input1", "input2")),  # the +-1 target in the third operand
    # pairwise/embedding family (csrc/cpu/embedding.cc, cuda/embedding.cu)
    "triplet_margin_loss": ("embedding", ("anchor", "positive", "negative")),
    "cosine_embedding_loss": ("embedding", ("input1", "input2")),
    # margin family (csrc/cpu/margin.cc, cuda/margin.cu; multilabel_soft_margin: the pointwise kernel's row mode)
    "multilabel_soft_margin_loss": ("margin", ("input",)),
    "multi_margin_loss": ("margin", ("input",)),
    "multilabel_margin_loss": ("margin", ("input",)),
    # sequence family (csrc/cpu/ctc.cc, cuda/ctc.cu)
    "ctc_loss": ("sequence", ("log_probs",)),
    # composed on the row-softmax kernel (python/lossx/margin.py)
    "poly1_cross_entropy": ("softmax", ("logits",)),
}


def names(family=None):
    return [n for n, (f, _) in CATALOG.items() if family is None or f == family]


# Framework-semantics namespaces: lossx.keras.<name> (Keras 3) and lossx.tf.<name>
# (tf.nn). Same entry shape; their differentiable input is y_pred / logits only.
# Row losses: csrc/cpu/keras_rows.cc, cuda/keras_rows.cu. The element-wise Keras
# losses run the pointwise family's kernel in row mode.
KERAS = {
    "categorical_crossentropy": ("keras", ("y_pred",)),
    "sparse_categorical_crossentropy": ("keras", ("y_pred",)),
    "categorical_focal_crossentropy": ("keras", ("y_pred",)),
    "categorical_hinge": ("keras", ("y_pred",)),
    "cosine_similarity": ("keras", ("y_pred",)),
    "dice": ("keras", ("y_pred",)),
    "tversky": ("keras", ("y_pred",)),
    # element-wise (csrc/cpu/pointwise.cc, "keras.*" lines of pointwise_losses.def)
    "mean_absolute_error": ("keras", ("y_pred",)),
    "mean_squared_error": ("keras", ("y_pred",)),
    "mean_absolute_percentage_error": ("keras", ("y_pred",)),
    "mean_squared_logarithmic_error": ("keras", ("y_pred",)),
    "huber": ("keras", ("y_pred",)),
    "log_cosh": ("keras", ("y_pred",)),
    "poisson": ("keras", ("y_pred",)),
    "kl_divergence": ("keras", ("y_pred",)),
    "binary_crossentropy": ("keras", ("y_pred",)),
    "binary_focal_crossentropy": ("keras", ("y_pred",)),
    "hinge": ("keras", ("y_pred",)),
    "squared_hinge": ("keras", ("y_pred",)),
}
TF = {
    "sigmoid_cross_entropy_with_logits": ("tf", ("logits",)),
    "softmax_cross_entropy_with_logits": ("tf", ("logits",)),
    "sparse_softmax_cross_entropy_with_logits": ("tf", ("logits",)),
}

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
}


def names(family=None):
    return [n for n, (f, _) in CATALOG.items() if family is None or f == family]

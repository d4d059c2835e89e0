"""Hot ops of lpm (:mod:`lpm.kernels.dispatch`), one dispatch function per op, each beside the
plain-torch reference (:mod:`lpm.kernels.reference`) its fast paths are tested against; fast paths
are registered per (op, device type, dtype, pair kernel) in :mod:`lpm.kernels.registry` (the CPU's
by :mod:`lpm.kernels.cpu`, on import)."""

if __name__ != "lpm.kernels":  # imported as a bare `kernels` from the repository root: see _toplevel
    from ._toplevel import hand_over

    hand_over(__name__, __file__)
else:
    from .dispatch import *  # noqa: F401,F403
    from .dispatch import __all__  # noqa: F401
    from . import cpu  # noqa: F401  (registers the CPU fast path)

"""LFM (Ambrosio-Tortorelli smoothing) in PyTorch, batched over channels and images.

Implements JOINT_SPEC.md, "Rationality input: LFM": per colour channel one
edge solve and one image solve by conjugate gradient (SciPy ``cg`` semantics,
``rtol=0.1``, ``maxiter=6``), OpenCV reflect-101 borders, min-max to [0, 255]
with a truncating uint8 cast, then a joint min-max over the stacked channels
with rounding. Every channel of every image is its own linear system: the CG
scalars (rho, step, beta) are per-system tensors and each system stops on its
own (a per-system ``active`` mask freezes it once ``||r|| < 0.1 ||b||``), so a
batch gives what the channels would give one by one.

Degenerate inputs are defined (the test oracle does the same):
- a channel whose maximum is 0 uses g = 0 instead of 0/0;
- a system whose right-hand side has norm 0 returns x = 0 (as SciPy's ``cg``);
- a min-max normalisation whose max - min <= DBL_EPSILON gives 0 everywhere
  (OpenCV ``normalize``: scale 0, shift = lower bound 0). A constant image is
  therefore mapped to black, and 1 x 1 / 2 x 2 images are handled (their
  gradients vanish, as OpenCV's reflect-101 makes them).

Float64 is the default because float32 CG moves tens of pixels by one grey
level (spec, "Measured facts"). Works on CPU or CUDA tensors. Two backends:
"eager" (the default: in-place torch ops over buffers kept between calls, every
size, no build; on a 2-core CPU 4-4.5x the oracle at 1024 x 768, faster than
the compiled one there) and "compile" (a functional twin under
``torch.compile``: fused loops, for GPUs; a build costs seconds to tens of
seconds; see :func:`lfm_tensor`). The eager operators are arranged for memory
passes, which is what both solves are bound by: see :func:`_edge_op`,
:func:`_image_op` and :func:`_cg`.

Results agree with the NumPy/SciPy oracle within 1 grey level, not bit for bit:
sums are ordered differently, so a channel's brightest pixel can truncate to
254 on one side and 255 on the other, and when all channels do so on one side
only the joint renormalisation moves most values by 1.
"""

from __future__ import annotations

import threading
import warnings
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ALPHA",
    "BETA",
    "EPSILON",
    "CG_MAXITER",
    "CG_RTOL",
    "lfm",
    "lfm_image",
    "lfm_tensor",
]

ALPHA = 1000.0
BETA = 0.01
EPSILON = 0.01
EDGE_ADD = BETA / (4 * EPSILON)  # a = 0.25, computed as the authors do
LAP_MUL = EPSILON * BETA  # m = 1e-4
CG_RTOL = 0.1
CG_MAXITER = 6
DBL_EPSILON = float(np.finfo(np.float64).eps)  # OpenCV normalize's threshold
# Cap on one chunk of systems (elements of one B x H x W work vector; ten such
# vectors live during a solve). On CPU a small chunk keeps the working set
# near the caches, which measured faster than batching channels: at 512 x 512
# one channel at a time (256 K elements) took 79 ms against 109 ms for the three
# channels together (1024 x 768 channels are solved one by one either way);
# only images below 512 x 512 still batch channels. On CUDA big batches fill
# the device.
CPU_CHUNK_ELEMENTS = 512 * 512
CUDA_CHUNK_ELEMENTS = 64 * 1024 * 1024


# --------------------------------------------------------------------------
# Stencils on B x H x W tensors, OpenCV filter2D semantics with reflect-101.
# --------------------------------------------------------------------------


def _dx(u: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = correlation of u with [-1, 0, 1] along x (reflect-101).

    With reflect-101 the first and last column read equal neighbours, so the
    result is exactly 0 there; it is also 0 for widths 1 and 2.
    """
    w = u.shape[-1]
    if w > 2:
        torch.sub(u[..., 2:], u[..., :-2], out=out[..., 1:-1])
    out[..., 0] = 0
    out[..., w - 1] = 0
    return out


def _dy(u: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = correlation of u with [-1, 0, 1]^T along y (reflect-101)."""
    h = u.shape[-2]
    if h > 2:
        torch.sub(u[..., 2:, :], u[..., :-2, :], out=out[..., 1:-1, :])
    out[..., 0, :] = 0
    out[..., h - 1, :] = 0
    return out


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-system dot product of two B x H x W tensors -> B (no temporaries)."""
    n = a.shape[0]
    return torch.bmm(a.reshape(n, 1, -1), b.reshape(n, -1, 1)).reshape(n)


class _Workspace:
    """Every buffer of one chunk's solve, so the eager path allocates nothing per chunk.

    A fresh 6 MB tensor costs about as much as three passes over it (the kernel
    zero-fills its pages on first touch; how often that happens depends on the
    allocator's state, which made timings swing by 50%), and a solve needs ten.
    The buffers are views of one flat tensor, which :func:`_workspace` keeps per
    thread for the next call. ``dx`` and ``dy`` hold the x and y differences:
    only their interior (columns, resp. rows, 1 .. -2) is written after
    :func:`_dx` / :func:`_dy` zeroed their borders at the start of a solve, so
    the borders stay 0, the value reflect-101 gives there, with no fill per call.
    """

    NAMES = ("g", "coef", "r", "p", "q", "v", "f", "dx", "dy", "b_e")

    def __init__(self, n: int, h: int, w: int, flat: torch.Tensor):
        size = n * h * w
        for k, name in enumerate(self.NAMES):
            setattr(self, name, flat[k * size : (k + 1) * size].view(n, h, w))
        self.b_e.fill_(EDGE_ADD)

    def take(self, n: int) -> _Workspace:
        """A view of the first ``n`` systems (chunks are slices along dim 0)."""
        if n == self.g.shape[0]:
            return self
        part = object.__new__(_Workspace)
        for name in self.NAMES:
            setattr(part, name, getattr(self, name)[:n])
        return part


# Largest flat workspace kept for the next call, per thread: 10 buffers of a
# 1024 x 768 channel in float64 are 63 MB; bigger images allocate per call.
WORKSPACE_CACHE_BYTES = 256 * 2**20
_kept = threading.local()


def _workspace(n: int, h: int, w: int, dtype: torch.dtype, device: torch.device) -> _Workspace:
    elements = len(_Workspace.NAMES) * n * h * w
    flat = getattr(_kept, "flat", None) if device.type == "cpu" else None
    if flat is None or flat.dtype != dtype or flat.numel() < elements:
        flat = torch.empty(elements, dtype=dtype, device=device)
        if device.type == "cpu" and flat.numel() * flat.element_size() <= WORKSPACE_CACHE_BYTES:
            _kept.flat = flat  # CUDA's caching allocator already reuses its blocks
    return _Workspace(n, h, w, flat)


def _edge_op(p: torch.Tensor, coef4: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A_e(p) = p (alpha |grad f|^2 + a) - m Lap(p), as p * coef4 - m * (sum of 4 neighbours).

    ``coef4`` is the bracket plus 4 m (the Laplacian's centre tap folded into the
    diagonal), so the operator is one product and four shifted adds: five passes
    over memory instead of nine for the Laplacian alone. Neighbours outside the
    image reflect (reflect-101: row -1 reads row 1; a side of length 1 reads itself).
    """
    h, w = p.shape[-2], p.shape[-1]
    m = -LAP_MUL
    torch.mul(p, coef4, out=out)
    if h > 1:
        out[..., 1:, :].add_(p[..., :-1, :], alpha=m)  # top
        out[..., 0, :].add_(p[..., 1, :], alpha=m)
        out[..., :-1, :].add_(p[..., 1:, :], alpha=m)  # bottom
        out[..., h - 1, :].add_(p[..., h - 2, :], alpha=m)
    else:
        out.add_(p, alpha=2 * m)
    if w > 1:
        out[..., :, 1:].add_(p[..., :, :-1], alpha=m)  # left
        out[..., :, 0].add_(p[..., :, 1], alpha=m)
        out[..., :, :-1].add_(p[..., :, 1:], alpha=m)  # right
        out[..., :, w - 1].add_(p[..., :, w - 2], alpha=m)
    else:
        out.add_(p, alpha=2 * m)
    return out


def _image_op(u: torch.Tensor, ec: torch.Tensor, ws: _Workspace, out: torch.Tensor) -> torch.Tensor:
    """A_f(u) = u - 2 alpha (Dx(e Dx u) + Dy(e Dy u)), with ``ec`` = -2 alpha e.

    Written as u + ec[y+1] Dy(u)[y+1] - ec[y-1] Dy(u)[y-1] + (the same along x):
    each product with ec rides on an addcmul, two differences and four
    addcmuls in all. Dy(ec Dy u) is 0 on the first and last row (reflect-101)
    and Dx(...) on the first and last column, which is why those are left as u.
    """
    h, w = u.shape[-2], u.shape[-1]
    d, dd = ws.dx, ws.dy
    if h > 2:
        torch.sub(u[..., 2:, :], u[..., :-2, :], out=dd[..., 1:-1, :])
        torch.addcmul(u[..., 1:-1, :], ec[..., 2:, :], dd[..., 2:, :], out=out[..., 1:-1, :])
        out[..., 1:-1, :].addcmul_(ec[..., :-2, :], dd[..., :-2, :], value=-1.0)
        out[..., 0, :] = u[..., 0, :]
        out[..., h - 1, :] = u[..., h - 1, :]
    else:
        out.copy_(u)
    if w > 2:
        torch.sub(u[..., :, 2:], u[..., :, :-2], out=d[..., :, 1:-1])
        out[..., :, 1:-1].addcmul_(ec[..., :, 2:], d[..., :, 2:])
        out[..., :, 1:-1].addcmul_(ec[..., :, :-2], d[..., :, :-2], value=-1.0)
    return out


def _cg(
    apply_a,
    b: torch.Tensor,
    maxiter: int,
    rtol: float,
    *,
    x: torch.Tensor | None = None,
    r: torch.Tensor | None = None,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
    first_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batched conjugate gradient with SciPy ``cg`` semantics, one system per batch row.

    x0 = 0, r = b; before each iteration a system stops (for good) once
    ||r|| < rtol ||b||; a system with ||b|| == 0 returns 0. Stopped systems
    keep x and r unchanged: their step and beta are forced to 0 (``where``),
    which also keeps 0/0 of a zero system from leaking NaN into the batch.

    ``x``, ``r``, ``p``, ``q`` are optional buffers (allocated when missing);
    ``b`` is only read. ``first_q`` is A b when the caller has it for less than
    an operator call. Passes saved on the way: iteration 0 reads b as p (no
    copy) and writes x = step p (no zero fill), the last one skips the update
    of r that nothing reads.
    """
    n = b.shape[0]
    view = (n,) + (1,) * (b.dim() - 1)
    x = torch.empty_like(b) if x is None else x
    r = torch.empty_like(b) if r is None else r
    p = torch.empty_like(b) if p is None else p
    q = torch.empty_like(b) if q is None else q
    r.copy_(b)
    rho = _bdot(r, r)
    atol = rtol * torch.sqrt(rho)  # ||b|| since r == b
    active = rho > 0
    rho_prev = rho
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    started = False
    for it in range(maxiter):
        if it > 0:
            rho = _bdot(r, r)
        # ||r|| < atol stops the system; r.r is what scipy's norm(r) squares
        active = active & ~(torch.sqrt(rho) < atol)
        if b.device.type == "cpu" and not bool(active.any()):
            break  # on CUDA skip the host sync: frozen systems cost only flops
        if it == 0:
            p_it = b  # p = r = b
            if first_q is None:
                apply_a(p_it, q)
            elif first_q is not q:
                q.copy_(first_q)
        else:
            beta = torch.where(active, rho / rho_prev, zero).view(view)
            torch.addcmul(r, p_it, beta, out=p)  # p = r + beta p, one pass
            p_it = p
            apply_a(p_it, q)
        step = torch.where(active, rho / _bdot(p_it, q), zero).view(view)
        if started:
            x.addcmul_(step, p_it)
        else:
            torch.mul(p_it, step, out=x)
            started = True
        if it < maxiter - 1:
            r.addcmul_(step, q, value=-1.0)
        rho_prev = rho
    if not started:
        x.zero_()
    return x


def _minmax_trunc_uint8(f: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Per-system min-max to [0, 255] as OpenCV normalize (float64), truncated to uint8.

    Overwrites ``f``; writes into ``out`` when given.
    """
    n = f.shape[0]
    flat = f.reshape(n, -1)
    lo = flat.amin(dim=1)
    hi = flat.amax(dim=1)
    rng = hi - lo
    ok = rng > DBL_EPSILON
    scale = torch.where(ok, 255.0 * (1.0 / torch.where(ok, rng, torch.ones_like(rng))), 0.0)
    shift = -lo * scale  # OpenCV: dmin - smin * scale with dmin = 0
    view = (n,) + (1,) * (f.dim() - 1)
    f.mul_(scale.view(view)).add_(shift.view(view))
    # np.uint8(float) truncates toward zero; clamp first so the cast is defined
    f.clamp_(0.0, 255.0)
    if out is None:
        return f.to(torch.uint8)
    return out.copy_(f)


def _joint_minmax_round(x: torch.Tensor) -> torch.Tensor:
    """N x C x H x W uint8 -> per-image joint min-max to [0, 255], rounded.

    Mirrors ``cv2.normalize`` of a uint8 array (NORM_MINMAX, uint8 output):
    OpenCV converts with float32 scale/shift and rounds half to even.
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    lo = flat.amin(dim=1).to(torch.float64)
    hi = flat.amax(dim=1).to(torch.float64)
    rng = hi - lo
    ok = rng > 0
    scale = torch.where(ok, 255.0 * (1.0 / torch.where(ok, rng, torch.ones_like(rng))), 0.0)
    shift = -lo * scale
    if x.device.type == "cpu" and bool(((lo == 0) & (hi == 255)).all()):
        return x  # the usual case: nothing moves (skipped on CUDA: no host sync)
    s32 = scale.to(torch.float32).view(n, 1, 1, 1)
    b32 = shift.to(torch.float32).view(n, 1, 1, 1)
    y = torch.round(x.to(torch.float32) * s32 + b32)
    return y.clamp_(0, 255).to(torch.uint8)


def _lfm_systems(
    chans: torch.Tensor,
    *,
    dtype: torch.dtype,
    maxiter: int,
    rtol: float,
    ws: _Workspace | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """B x H x W channels (any real dtype, 0..255) -> B x H x W uint8 (spec steps 1-5)."""
    n, h, w = chans.shape
    if ws is None:
        ws = _workspace(n, h, w, dtype, chans.device)
    view = (n, 1, 1)
    g = ws.g.copy_(chans)
    cmax = g.reshape(n, -1).amax(dim=1)
    # g = c / max(c); all-zero channels stay 0 (no 0/0)
    g.div_(torch.where(cmax > 0, cmax, torch.ones_like(cmax)).view(view))

    # |grad f|^2 with f = g, folded into the edge operator's diagonal. dx and dy
    # are the image operator's buffers: their borders are 0 and stay 0.
    coef = ws.coef
    gx, gy = _dx(g, ws.dx), _dy(g, ws.dy)
    torch.mul(gx, gx, out=coef)
    coef.addcmul_(gy, gy)
    coef.mul_(ALPHA).add_(EDGE_ADD)
    # iteration 0 applies A_e to b_e, a constant: its Laplacian is exactly 0
    torch.mul(ws.b_e, coef, out=ws.q)
    coef.add_(4 * LAP_MUL)

    cg_bufs = {"r": ws.r, "p": ws.p, "q": ws.q}
    v = _cg(
        lambda p, o: _edge_op(p, coef, o), ws.b_e, maxiter, rtol, x=ws.v, first_q=ws.q, **cg_bufs
    )
    ec = v.mul_(v).mul_(-2 * ALPHA)  # e = v^2, times the image operator's -2 alpha
    f = _cg(lambda p, o: _image_op(p, ec, ws, o), g, maxiter, rtol, x=ws.f, **cg_bufs)
    return _minmax_trunc_uint8(f, out)


# --------------------------------------------------------------------------
# Functional twin for torch.compile: the same arithmetic without ``out=`` and
# slice writes, so inductor can fuse each operator (and the CG updates) into a
# few loops. It needs H, W >= 3 (F.pad's reflect mode); smaller images use the
# eager path, which handles every size.
# --------------------------------------------------------------------------


def _f_dx(u: torch.Tensor) -> torch.Tensor:
    return F.pad(u[..., 2:] - u[..., :-2], (1, 1))  # border columns are exactly 0


def _f_dy(u: torch.Tensor) -> torch.Tensor:
    return F.pad(u[..., 2:, :] - u[..., :-2, :], (0, 0, 1, 1))


def _f_lap(u: torch.Tensor) -> torch.Tensor:
    p = F.pad(u, (1, 1, 1, 1), mode="reflect")  # torch "reflect" == OpenCV reflect-101
    return p[:, :-2, 1:-1] + p[:, 1:-1, :-2] + (-4.0) * u + p[:, 1:-1, 2:] + p[:, 2:, 1:-1]


def _f_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=(1, 2))


def _f_cg(apply_a, b: torch.Tensor, maxiter: int, rtol: float) -> torch.Tensor:
    """Functional twin of :func:`_cg` (no host sync: frozen systems keep computing)."""
    x = torch.zeros_like(b)
    r = b
    p = b
    rho = _f_dot(r, r)
    atol = rtol * torch.sqrt(rho)
    active = rho > 0
    rho_prev = rho
    for it in range(maxiter):
        if it > 0:
            rho = _f_dot(r, r)
        active = active & ~(torch.sqrt(rho) < atol)
        if it > 0:
            beta = torch.where(active, rho / rho_prev, 0.0)
            p = r + p * beta[:, None, None]
        q = apply_a(p)
        step = torch.where(active, rho / _f_dot(p, q), 0.0)[:, None, None]
        x = x + step * p
        r = r - step * q
        rho_prev = rho
    return x


def _f_lfm_systems(chans: torch.Tensor, maxiter: int, rtol: float) -> torch.Tensor:
    """Spec steps 1-4 (f in float64); the caller normalises it outside the graph."""
    c = chans.to(torch.float64) if not chans.is_floating_point() else chans
    cmax = c.amax(dim=(1, 2))
    g = c / torch.where(cmax > 0, cmax, 1.0)[:, None, None]
    gx = _f_dx(g)
    gy = _f_dy(g)
    coef = (gx * gx + gy * gy) * ALPHA + EDGE_ADD
    v = _f_cg(lambda v: v * coef - LAP_MUL * _f_lap(v), torch.full_like(g, EDGE_ADD), maxiter, rtol)
    e = v * v
    f = _f_cg(
        lambda u: u - 2 * ALPHA * (_f_dx(e * _f_dx(u)) + _f_dy(e * _f_dy(u))), g, maxiter, rtol
    )
    return f


_COMPILED: dict[str, object] = {}
_COMPILE_FAILED: set[str] = set()


def _compiled_systems(device_type: str):
    """torch.compile'd :func:`_f_lfm_systems`.

    On CUDA with dynamic shapes: one Triton build serves every size. On CPU,
    dynamo's automatic dynamic shapes: the first size gets a static build, the
    second a build for symbolic sizes that then serves every other size (two
    builds in all, each 10-25 s once, cached on disk). The symbolic build measured
    within 10-20% of a static one here (1024 x 768: 186 against 167 ms; 800 x 600:
    95 against 89 ms), where a build per size would stall a worker on every new
    image size of a real data set.
    """
    fn = _COMPILED.get(device_type)
    if fn is None:
        # aggressive_fusion lets inductor fuse nodes that share no buffer but run over
        # the same pixels (a CG update with the next stencil's reads): fewer passes
        # over memory. On this 2-core CPU at 1024 x 768 it took the compiled solve from
        # 3.8x to 5.2x the oracle (medians of interleaved rounds, docs/benchmarks.md).
        fn = torch.compile(
            _f_lfm_systems,
            dynamic=True if device_type != "cpu" else None,
            options={"aggressive_fusion": True},
        )
        _COMPILED[device_type] = fn
    return fn


def _run_systems(
    chans: torch.Tensor,
    *,
    dtype: torch.dtype,
    maxiter: int,
    rtol: float,
    backend: str,
    ws: _Workspace,
    out: torch.Tensor,
) -> None:
    """Spec steps 1-5 of a chunk of systems into ``out`` (uint8), on the chosen backend."""
    h, w = chans.shape[-2:]
    dev = chans.device.type
    if backend == "compile" and h >= 3 and w >= 3 and dev not in _COMPILE_FAILED:
        try:
            f = _compiled_systems(dev)(chans.to(dtype), maxiter, rtol)
            # normalise outside the graph: inductor would fuse f * scale + shift into an
            # FMA, which flips a channel's brightest pixel between 254 and 255
            _minmax_trunc_uint8(f, out)
            return
        except Exception as exc:  # noqa: BLE001 -- any backend failure (no C++ compiler, no Triton) falls back
            _COMPILE_FAILED.add(dev)
            warnings.warn(
                f"LFM: torch.compile failed on {dev} ({type(exc).__name__}: {exc}); "
                "using the eager implementation",
                RuntimeWarning,
                stacklevel=3,
            )
    _lfm_systems(
        chans, dtype=dtype, maxiter=maxiter, rtol=rtol, ws=ws.take(chans.shape[0]), out=out
    )


def lfm_tensor(
    images: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    maxiter: int = CG_MAXITER,
    rtol: float = CG_RTOL,
    max_chunk_elements: int | None = None,
    backend: str = "eager",
) -> torch.Tensor:
    """LFM of an N x C x H x W batch (uint8 or real values in 0..255) -> uint8, same device.

    Every channel is its own system; systems are solved in chunks of at most
    ``max_chunk_elements`` pixels (default: 256K pixels on CPU, 64M on
    CUDA). The joint renormalisation (spec step 6) is per image over its C
    channels. ``backend="compile"`` runs a ``torch.compile``'d twin (on an H200
    3.4x the eager code of the time; on a 2-core CPU slower than eager; a build
    takes seconds to tens of seconds, later processes reuse inductor's on-disk
    cache; on CPU two builds, the first size and then all others) and falls back
    to eager with a warning when compilation is unavailable.
    """
    if images.dim() != 4:
        raise ValueError(f"expected N x C x H x W, got shape {tuple(images.shape)}")
    if backend not in ("eager", "compile"):
        raise ValueError(f"backend must be 'eager' or 'compile', not {backend!r}")
    n, c, h, w = images.shape
    if n == 0 or c == 0 or h == 0 or w == 0:
        return torch.zeros(images.shape, dtype=torch.uint8, device=images.device)
    if max_chunk_elements is None:
        cuda = images.device.type == "cuda"
        max_chunk_elements = CUDA_CHUNK_ELEMENTS if cuda else CPU_CHUNK_ELEMENTS
    systems = images.reshape(n * c, h, w)
    per_chunk = max(1, max_chunk_elements // (h * w))
    out = torch.empty((n * c, h, w), dtype=torch.uint8, device=images.device)
    ws = _workspace(min(per_chunk, n * c), h, w, dtype, images.device)  # shared by every chunk
    for start in range(0, n * c, per_chunk):
        stop = min(start + per_chunk, n * c)
        _run_systems(
            systems[start:stop],
            dtype=dtype,
            maxiter=maxiter,
            rtol=rtol,
            backend=backend,
            ws=ws,
            out=out[start:stop],
        )
    return _joint_minmax_round(out.reshape(n, c, h, w))


def lfm_image(
    image: np.ndarray,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    backend: str = "eager",
) -> np.ndarray:
    """LFM of one H x W x C (or H x W) uint8 array -> uint8 array of the same shape."""
    return lfm([image], device=device, dtype=dtype, backend=backend)[0]


def lfm(
    images: Sequence[np.ndarray] | np.ndarray | torch.Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    max_chunk_elements: int | None = None,
    backend: str = "eager",
) -> list[np.ndarray] | np.ndarray | torch.Tensor:
    """LFM of images in any of three forms.

    - an N x C x H x W tensor: returns an N x C x H x W uint8 tensor (on the
      tensor's device, or on ``device`` if given);
    - one H x W x C (or H x W) uint8 array: returns one array (computed on
      ``device``, default CPU);
    - a list of H x W x C (or H x W) uint8 arrays of differing sizes: images
      of the same shape are batched together; returns a list in input order.
    """
    kw = {"dtype": dtype, "max_chunk_elements": max_chunk_elements, "backend": backend}
    if isinstance(images, torch.Tensor):
        x = images if device is None else images.to(device)
        return lfm_tensor(x, **kw)
    if isinstance(images, np.ndarray):
        return lfm([images], device=device, **kw)[0]

    dev = torch.device(device) if device is not None else torch.device("cpu")
    arrays = [np.asarray(im) for im in images]
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, arr in enumerate(arrays):
        if arr.ndim not in (2, 3):
            raise ValueError(f"image {i}: expected H x W or H x W x C, got shape {arr.shape}")
        groups[arr.shape].append(i)
    results: list[np.ndarray | None] = [None] * len(arrays)
    for shape, idx in groups.items():
        batch = np.stack([arrays[i] for i in idx])
        batch = batch[:, None] if len(shape) == 2 else batch.transpose(0, 3, 1, 2)
        t = torch.from_numpy(np.ascontiguousarray(batch)).to(dev)
        y = lfm_tensor(t, **kw).cpu().numpy()
        for k, i in enumerate(idx):
            yk = y[k, 0] if len(shape) == 2 else y[k].transpose(1, 2, 0)
            results[i] = np.ascontiguousarray(yk)
    return results  # type: ignore[return-value]

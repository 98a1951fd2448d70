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
"eager" (in-place torch ops, every size, the default) and "compile" (a
functional twin under ``torch.compile``: fused loops, several times faster once
built; see :func:`lfm_tensor`).

Results agree with the NumPy/SciPy oracle within 1 grey level, not bit for bit:
sums are ordered differently, so a channel's brightest pixel can truncate to
254 on one side and 255 on the other, and when all channels do so on one side
only the joint renormalisation moves most values by 1.
"""

from __future__ import annotations

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
# Cap on one chunk of systems (elements of one B x H x W work vector; about 9
# such vectors live during a solve). On CPU a small chunk keeps the working set
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


def _laplacian(u: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = 4-neighbour Laplacian of u (reflect-101).

    Summed in OpenCV filter2D's order over the non-zero taps (top, left,
    centre, right, bottom), so float64 results match its rounding.
    """
    h, w = u.shape[-2], u.shape[-1]
    # top neighbour u[y-1]; row -1 reflects to row 1 (to row 0 when h == 1)
    out[..., 1:, :] = u[..., :-1, :]
    out[..., 0, :] = u[..., 1 if h > 1 else 0, :]
    # left neighbour u[x-1]
    out[..., :, 1:] += u[..., :, :-1]
    out[..., :, 0] += u[..., :, 1 if w > 1 else 0]
    out.add_(u, alpha=-4.0)  # -4 * u is exact, so this equals s += (-4) * u
    # right neighbour u[x+1]; column w reflects to column w-2
    out[..., :, :-1] += u[..., :, 1:]
    out[..., :, w - 1] += u[..., :, w - 2 if w > 1 else 0]
    # bottom neighbour u[y+1]
    out[..., :-1, :] += u[..., 1:, :]
    out[..., h - 1, :] += u[..., h - 2 if h > 1 else 0, :]
    return out


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-system dot product of two B x H x W tensors -> B (no temporaries)."""
    n = a.shape[0]
    return torch.bmm(a.reshape(n, 1, -1), b.reshape(n, -1, 1)).reshape(n)


class _Workspace:
    """Scratch buffers shared by the operators of one chunk (avoids re-allocation)."""

    def __init__(self, like: torch.Tensor) -> None:
        self.t1 = torch.empty_like(like)
        self.t2 = torch.empty_like(like)


def _edge_op(
    v: torch.Tensor, coef: torch.Tensor, ws: _Workspace, out: torch.Tensor
) -> torch.Tensor:
    """A_e(v) = v * (alpha |grad f|^2 + a) - m Lap(v); ``coef`` holds the bracket."""
    lap = _laplacian(v, ws.t1)
    torch.mul(v, coef, out=out)
    out.add_(lap, alpha=-LAP_MUL)
    return out


def _image_op(u: torch.Tensor, e: torch.Tensor, ws: _Workspace, out: torch.Tensor) -> torch.Tensor:
    """A_f(u) = u - 2 alpha (Dx(e Dx u) + Dy(e Dy u))."""
    t1, t2 = ws.t1, ws.t2
    _dx(u, t1).mul_(e)
    _dx(t1, t2)  # t2 = Dx(e Dx u)
    _dy(u, t1).mul_(e)
    _dy(t1, out)  # out = Dy(e Dy u), used as scratch before the final combination
    t2.add_(out)
    torch.add(u, t2, alpha=-2 * ALPHA, out=out)
    return out


def _cg(
    apply_a,
    b: torch.Tensor,
    maxiter: int,
    rtol: float,
) -> torch.Tensor:
    """Batched conjugate gradient with SciPy ``cg`` semantics, one system per batch row.

    x0 = 0, r = b; before each iteration a system stops (for good) once
    ||r|| < rtol ||b||; a system with ||b|| == 0 returns 0. Stopped systems
    keep x and r unchanged: their step and beta are forced to 0 (``where``),
    which also keeps 0/0 of a zero system from leaking NaN into the batch.
    """
    n = b.shape[0]
    view = (n,) + (1,) * (b.dim() - 1)
    x = torch.zeros_like(b)
    r = b.clone()
    p = torch.empty_like(b)
    q = torch.empty_like(b)
    rho = _bdot(r, r)
    atol = rtol * torch.sqrt(rho)  # ||b|| since r == b
    active = rho > 0
    rho_prev = rho
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    for it in range(maxiter):
        if it > 0:
            rho = _bdot(r, r)
        # ||r|| < atol stops the system; r.r is what scipy's norm(r) squares
        active = active & ~(torch.sqrt(rho) < atol)
        if b.device.type == "cpu" and not bool(active.any()):
            break  # on CUDA skip the host sync: frozen systems cost only flops
        if it == 0:
            p.copy_(r)
        else:
            beta = torch.where(active, rho / rho_prev, zero)
            torch.addcmul(r, p, beta.view(view), out=p)  # p = r + beta p, one pass
        apply_a(p, q)
        step = torch.where(active, rho / _bdot(p, q), zero).view(view)
        x.addcmul_(step, p)
        r.addcmul_(step, q, value=-1.0)
        rho_prev = rho
    return x


def _minmax_trunc_uint8(f: torch.Tensor) -> torch.Tensor:
    """Per-system min-max to [0, 255] as OpenCV normalize (float64), truncated to uint8."""
    n = f.shape[0]
    flat = f.reshape(n, -1)
    lo = flat.amin(dim=1)
    hi = flat.amax(dim=1)
    rng = hi - lo
    ok = rng > DBL_EPSILON
    scale = torch.where(ok, 255.0 * (1.0 / torch.where(ok, rng, torch.ones_like(rng))), 0.0)
    shift = -lo * scale  # OpenCV: dmin - smin * scale with dmin = 0
    view = (n,) + (1,) * (f.dim() - 1)
    out = f * scale.view(view) + shift.view(view)
    # np.uint8(float) truncates toward zero; clamp first so the cast is defined
    return out.clamp_(0.0, 255.0).to(torch.uint8)


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
    chans: torch.Tensor, *, dtype: torch.dtype, maxiter: int, rtol: float
) -> torch.Tensor:
    """B x H x W channels (any real dtype, 0..255) -> B x H x W uint8 (spec steps 1-5)."""
    c = chans.to(dtype)
    n = c.shape[0]
    view = (n, 1, 1)
    cmax = c.reshape(n, -1).amax(dim=1)
    inv = torch.where(cmax > 0, cmax, torch.ones_like(cmax))
    g = c / inv.view(view)  # c / max(c); all-zero channels stay 0 (no 0/0)
    ws = _Workspace(g)

    # |grad f|^2 with f = g, folded into the edge operator's diagonal
    coef = torch.empty_like(g)
    _dx(g, ws.t1)
    _dy(g, ws.t2)
    torch.mul(ws.t1, ws.t1, out=coef)
    coef.addcmul_(ws.t2, ws.t2)
    coef.mul_(ALPHA).add_(EDGE_ADD)

    b_e = torch.full_like(g, EDGE_ADD)
    v = _cg(lambda p, out: _edge_op(p, coef, ws, out), b_e, maxiter, rtol)
    e = v.mul_(v)  # e = v^2

    f = _cg(lambda p, out: _image_op(p, e, ws, out), g, maxiter, rtol)
    return _minmax_trunc_uint8(f)


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
    return _minmax_trunc_uint8(f)


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
    chans: torch.Tensor, *, dtype: torch.dtype, maxiter: int, rtol: float, backend: str
) -> torch.Tensor:
    h, w = chans.shape[-2:]
    dev = chans.device.type
    if backend == "compile" and h >= 3 and w >= 3 and dev not in _COMPILE_FAILED:
        try:
            f = _compiled_systems(dev)(chans.to(dtype), maxiter, rtol)
            # normalise outside the graph: inductor would fuse f * scale + shift into an
            # FMA, which flips a channel's brightest pixel between 254 and 255
            return _minmax_trunc_uint8(f)
        except Exception as exc:  # noqa: BLE001 -- any backend failure (no C++ compiler, no Triton) falls back
            _COMPILE_FAILED.add(dev)
            warnings.warn(
                f"LFM: torch.compile failed on {dev} ({type(exc).__name__}: {exc}); "
                "using the eager implementation",
                RuntimeWarning,
                stacklevel=3,
            )
    return _lfm_systems(chans, dtype=dtype, maxiter=maxiter, rtol=rtol)


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
    channels. ``backend="compile"`` runs a ``torch.compile``'d twin (several
    times faster once built; a build takes seconds to tens of seconds, later
    processes reuse inductor's on-disk cache; on CPU one build per image size)
    and falls back to eager with a warning when compilation is unavailable.
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
    for start in range(0, n * c, per_chunk):
        stop = min(start + per_chunk, n * c)
        out[start:stop] = _run_systems(
            systems[start:stop], dtype=dtype, maxiter=maxiter, rtol=rtol, backend=backend
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

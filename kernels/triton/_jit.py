"""The Triton kernels of :mod:`lpm.kernels.triton` (launched by :mod:`lpm.kernels.triton.ops`).

Layout shared by every kernel: agent tensors ``(B, N, D)`` contiguous; a program owns ``BLOCK_R``
agents (followers for the row kernels, walked over ``rowptr/col``; followees for the column
kernels, walked over the followee-sorted edge ids ``perm`` with offsets ``starts``), side by side,
taken in a given ``order`` (by segment length), and a block of ``BLOCK_B`` scenarios. Its lanes
are ``(scenario, dimension)`` pairs, ``lane = b * BLOCK_D + k``, so each edge's indices and weight
are read once for all scenarios of the block. The agents' edges are walked together in chunks of
``BLOCK_E`` (as many chunks as the longest segment needs): a ``(BLOCK_R, BLOCK_E, lanes)`` tile in
registers; nothing per edge is written to memory, except the per-edge gradient of a dense edge
multiplier, which is itself per edge. Element offsets are int64 (``B * N * D`` may pass 2**31);
the graph's indices are read as stored (int32 below 2**31 edges).

Pair kernels (``PAIR``): 0 none (``w = 1``), 1 smooth bounded confidence, 2 attraction-repulsion;
``pair_params`` holds ``(tau, rho, repulsion)`` and ``eps`` is read per (scenario, receiver) with strides
``eps_sb, eps_sn`` (0 where broadcast).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def _sign(v):
    return tl.where(v > 0, 1.0, tl.where(v < 0, -1.0, 0.0)).to(v.dtype)


@triton.jit
def _pair_weight(dist, eps, tau, rho, rep, PAIR: tl.constexpr):
    """``w(dist)``; for ``PAIR == 0`` not called."""
    attract = _sigmoid((eps - dist) / tau)
    if PAIR == 2:
        attract = attract - rep * _sigmoid((dist - rho) / tau)
    return attract


@triton.jit
def _pair_grads(dist, eps, tau, rho, rep, PAIR: tl.constexpr):
    """``(w, dw/ddist, dw/deps, dw/dtau, dw/drho, dw/drep)`` of the pair kernel at ``dist``."""
    za = (eps - dist) / tau
    sa = _sigmoid(za)
    ga = sa * (1.0 - sa) / tau
    w = sa
    d_dist = -ga
    d_tau = -ga * za
    d_rho = za * 0.0
    d_rep = za * 0.0
    if PAIR == 2:
        zr = (dist - rho) / tau
        sr = _sigmoid(zr)
        gr = sr * (1.0 - sr) / tau
        w = sa - rep * sr
        d_dist = -ga - rep * gr
        d_tau = d_tau + rep * gr * zr
        d_rho = rep * gr
        d_rep = -sr
    return w, d_dist, ga, d_tau, d_rho, d_rep


@triton.jit
def _lanes(B, D, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """The program's lanes: scenario ``b`` (int64), dimension ``k``, and whether the lane is real."""
    lane = tl.arange(0, BLOCK_B * BLOCK_D)
    b = (tl.program_id(1) * BLOCK_B + lane // BLOCK_D).to(tl.int64)
    k = lane % BLOCK_D
    return b, k, (b < B) & (k < D)


@triton.jit
def _agents(offsets, order, N, BLOCK_R: tl.constexpr):
    """The program's agents ``a`` (int64), whether each exists, and their segments ``[start, end)``.
    Programs take agents in ``order`` (longest segments first), so an agent's program mates have
    segments of about its length and the longest programs start first."""
    slot = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    a_ok = slot < N
    a = tl.load(order + slot, mask=a_ok, other=0).to(tl.int64)
    start = tl.load(offsets + a, mask=a_ok, other=0)
    end = tl.load(offsets + a + 1, mask=a_ok, other=0)
    return a, a_ok, start, end


@triton.jit
def _scenarios(B, BLOCK_B: tl.constexpr):
    bb = (tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    return bb, bb < B


@triton.jit
def _per_scenario(acc, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """Sum lanes over dimensions: ``(BLOCK_R, BLOCK_B * BLOCK_D) -> (BLOCK_R, BLOCK_B)``."""
    return tl.sum(tl.reshape(acc, [BLOCK_R, BLOCK_B, BLOCK_D]), axis=2)


@triton.jit
def pull_rows_fwd(rowptr, order, col, ew, sw, x, eps, pair_params, pull, weight, N, B, D, eps_sb, eps_sn,
                  PAIR: tl.constexpr, HAS_EW: tl.constexpr, HAS_SW: tl.constexpr, BLOCK_R: tl.constexpr,
                  BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """``pull_i = sum_e c_e w (x_j - x_i)``, ``weight_i = sum_e |c_e w|`` (``sum_e c_e`` for
    ``PAIR == 0``, stored once per scenario), ``c_e = a_e s_j``, over the followees of each ``i``."""
    b, k, lane_ok = _lanes(B, D, BLOCK_B, BLOCK_D)
    i, i_ok, start, end = _agents(rowptr, order, N, BLOCK_R)
    tau = tl.load(pair_params)
    rho = tl.load(pair_params + 1)
    rep = tl.load(pair_params + 2)
    ok = i_ok[:, None] & lane_ok[None, :]  # (R, L)
    at_i = (b[None, :] * N + i[:, None]) * D + k[None, :]
    xi = tl.load(x + at_i, mask=ok, other=0.0)
    eps_i = tl.load(eps + b[None, :] * eps_sb + i[:, None] * eps_sn, mask=ok, other=1.0)
    acc_p = xi * 0.0
    acc_w = xi * 0.0
    for t in range(0, tl.max(end - start, axis=0), BLOCK_E):
        e = start[:, None] + t + tl.arange(0, BLOCK_E)[None, :]  # (R, E)
        e_ok = e < end[:, None]
        j = tl.load(col + e, mask=e_ok, other=0).to(tl.int64)
        m = e_ok[:, :, None] & ok[:, None, :]  # (R, E, L)
        xj = tl.load(x + (b[None, None, :] * N + j[:, :, None]) * D + k[None, None, :], mask=m, other=0.0)
        diff = xj - xi[:, None, :]
        c = m.to(xj.dtype)
        if HAS_EW:
            c = c * tl.load(ew + e, mask=e_ok, other=0.0)[:, :, None]
        if HAS_SW:
            c = c * tl.load(sw + b[None, None, :] * N + j[:, :, None], mask=m, other=0.0)
        if PAIR == 0:
            w = c
            acc_w += tl.sum(w, axis=1)
        else:
            w = _pair_weight(tl.abs(diff), eps_i[:, None, :], tau, rho, rep, PAIR) * c
            acc_w += tl.sum(tl.abs(w), axis=1)
        acc_p += tl.sum(w * diff, axis=1)
    tl.store(pull + at_i, acc_p, mask=ok)
    if PAIR == 0:
        tl.store(weight + b[None, :] * N + i[:, None], acc_w, mask=ok & (k[None, :] == 0))
    else:
        tl.store(weight + at_i, acc_w, mask=ok)


@triton.jit
def pull_rows_bwd(rowptr, order, col, ew, sw, x, eps, pair_params, gp, gw, gx, gpart, N, B, D, eps_sb, eps_sn,
                  PAIR: tl.constexpr, HAS_EW: tl.constexpr, HAS_SW: tl.constexpr, HAS_GW: tl.constexpr,
                  NEED_PARAMS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr,
                  BLOCK_D: tl.constexpr):
    """The receiver's side of the pull's backward (``PAIR > 0``): ``gx_i = -sum_e dL/ddiff_e`` and,
    with ``NEED_PARAMS``, ``gpart[q, b, i]``, this receiver's share of the gradient of eps, tau, rho
    and repulsion (``q = 0..3``)."""
    b, k, lane_ok = _lanes(B, D, BLOCK_B, BLOCK_D)
    i, i_ok, start, end = _agents(rowptr, order, N, BLOCK_R)
    tau = tl.load(pair_params)
    rho = tl.load(pair_params + 1)
    rep = tl.load(pair_params + 2)
    ok = i_ok[:, None] & lane_ok[None, :]
    at_i = (b[None, :] * N + i[:, None]) * D + k[None, :]
    xi = tl.load(x + at_i, mask=ok, other=0.0)
    eps_i = tl.load(eps + b[None, :] * eps_sb + i[:, None] * eps_sn, mask=ok, other=1.0)
    gp_i = tl.load(gp + at_i, mask=ok, other=0.0)
    gw_i = xi * 0.0
    if HAS_GW:
        gw_i = tl.load(gw + at_i, mask=ok, other=0.0)
    acc_x = xi * 0.0
    acc_eps = xi * 0.0
    acc_tau = xi * 0.0
    acc_rho = xi * 0.0
    acc_rep = xi * 0.0
    for t in range(0, tl.max(end - start, axis=0), BLOCK_E):
        e = start[:, None] + t + tl.arange(0, BLOCK_E)[None, :]
        e_ok = e < end[:, None]
        j = tl.load(col + e, mask=e_ok, other=0).to(tl.int64)
        m = e_ok[:, :, None] & ok[:, None, :]
        xj = tl.load(x + (b[None, None, :] * N + j[:, :, None]) * D + k[None, None, :], mask=m, other=0.0)
        diff = xj - xi[:, None, :]
        c = m.to(xj.dtype)
        if HAS_EW:
            c = c * tl.load(ew + e, mask=e_ok, other=0.0)[:, :, None]
        if HAS_SW:
            c = c * tl.load(sw + b[None, None, :] * N + j[:, :, None], mask=m, other=0.0)
        w0, d_dist, d_eps, d_tau, d_rho, d_rep = _pair_grads(tl.abs(diff), eps_i[:, None, :], tau, rho, rep, PAIR)
        w = w0 * c
        g_w = gp_i[:, None, :] * diff
        if HAS_GW:
            g_w += gw_i[:, None, :] * _sign(w)
        g_w0 = g_w * c
        acc_x -= tl.sum(gp_i[:, None, :] * w + g_w0 * d_dist * _sign(diff), axis=1)
        if NEED_PARAMS:
            acc_eps += tl.sum(g_w0 * d_eps, axis=1)
            acc_tau += tl.sum(g_w0 * d_tau, axis=1)
            acc_rho += tl.sum(g_w0 * d_rho, axis=1)
            acc_rep += tl.sum(g_w0 * d_rep, axis=1)
    tl.store(gx + at_i, acc_x, mask=ok)
    if NEED_PARAMS:
        bb, bb_ok = _scenarios(B, BLOCK_B)
        b_ok = i_ok[:, None] & bb_ok[None, :]
        tl.store(gpart + bb[None, :] * N + i[:, None], _per_scenario(acc_eps, BLOCK_R, BLOCK_B, BLOCK_D), mask=b_ok)
        tl.store(gpart + (bb[None, :] + B) * N + i[:, None], _per_scenario(acc_tau, BLOCK_R, BLOCK_B, BLOCK_D),
                 mask=b_ok)
        tl.store(gpart + (bb[None, :] + 2 * B) * N + i[:, None], _per_scenario(acc_rho, BLOCK_R, BLOCK_B, BLOCK_D),
                 mask=b_ok)
        tl.store(gpart + (bb[None, :] + 3 * B) * N + i[:, None], _per_scenario(acc_rep, BLOCK_R, BLOCK_B, BLOCK_D),
                 mask=b_ok)


@triton.jit
def pull_cols_bwd(starts, order, perm, row, ew, sw, x, eps, pair_params, gp, gw, gx_in, gx, gsw, N, B, D, GW_D,
                  eps_sb, eps_sn,
                  PAIR: tl.constexpr, HAS_EW: tl.constexpr, HAS_SW: tl.constexpr, HAS_GW: tl.constexpr,
                  NEED_SW: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr,
                  BLOCK_D: tl.constexpr):
    """The source's side of the pull's backward, over each followee ``j``'s out-edges:
    ``gx_j = gx_in_j + sum_e dL/ddiff_e`` and, with ``NEED_SW``, ``gsw_j = sum_e dL/ds_j``.
    ``gw`` has last dimension ``GW_D`` (1 without a pair kernel, whose weight is ``sum_e c_e``)."""
    b, k, lane_ok = _lanes(B, D, BLOCK_B, BLOCK_D)
    j, j_ok, start, end = _agents(starts, order, N, BLOCK_R)
    tau = tl.load(pair_params)
    rho = tl.load(pair_params + 1)
    rep = tl.load(pair_params + 2)
    ok = j_ok[:, None] & lane_ok[None, :]
    at_j = (b[None, :] * N + j[:, None]) * D + k[None, :]
    xj = tl.load(x + at_j, mask=ok, other=0.0)
    s_j = xj * 0.0 + 1.0
    if HAS_SW:
        s_j = tl.load(sw + b[None, :] * N + j[:, None], mask=ok, other=0.0)
    acc_x = xj * 0.0
    acc_s = xj * 0.0
    for t in range(0, tl.max(end - start, axis=0), BLOCK_E):
        p = start[:, None] + t + tl.arange(0, BLOCK_E)[None, :]
        p_ok = p < end[:, None]
        e = tl.load(perm + p, mask=p_ok, other=0).to(tl.int64)
        i = tl.load(row + e, mask=p_ok, other=0).to(tl.int64)
        m = p_ok[:, :, None] & ok[:, None, :]
        at_i = (b[None, None, :] * N + i[:, :, None]) * D + k[None, None, :]
        xi = tl.load(x + at_i, mask=m, other=0.0)
        gp_i = tl.load(gp + at_i, mask=m, other=0.0)
        diff = xj[:, None, :] - xi
        a = m.to(xj.dtype)
        if HAS_EW:
            a = a * tl.load(ew + e, mask=p_ok, other=0.0)[:, :, None]
        c = a * s_j[:, None, :]
        g_w = gp_i * diff
        if PAIR == 0:
            w0 = a * 0.0 + 1.0
            if HAS_GW:
                g_w += tl.load(gw + (b[None, None, :] * N + i[:, :, None]) * GW_D + k[None, None, :],
                               mask=m & (k[None, None, :] < GW_D), other=0.0)
            acc_x += tl.sum(gp_i * c, axis=1)
        else:
            eps_i = tl.load(eps + b[None, None, :] * eps_sb + i[:, :, None] * eps_sn, mask=m, other=1.0)
            w0, d_dist, d_eps, d_tau, d_rho, d_rep = _pair_grads(tl.abs(diff), eps_i, tau, rho, rep, PAIR)
            w = w0 * c
            if HAS_GW:
                g_w += tl.load(gw + at_i, mask=m, other=0.0) * _sign(w)
            acc_x += tl.sum(gp_i * w + g_w * c * d_dist * _sign(diff), axis=1)
        if NEED_SW:
            acc_s += tl.sum(g_w * a * w0, axis=1)
    tl.store(gx + at_j, tl.load(gx_in + at_j, mask=ok, other=0.0) + acc_x, mask=ok)
    if NEED_SW:
        bb, bb_ok = _scenarios(B, BLOCK_B)
        tl.store(gsw + bb[None, :] * N + j[:, None], _per_scenario(acc_s, BLOCK_R, BLOCK_B, BLOCK_D),
                 mask=j_ok[:, None] & bb_ok[None, :])


@triton.jit
def sum_rows_fwd(rowptr, order, col, ew, es, x, out, N, B, D, es_sb, HAS_EW: tl.constexpr, HAS_ES: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """``out_i = sum_e a_e es_be x_j`` over the followees ``j`` of each ``i``."""
    b, k, lane_ok = _lanes(B, D, BLOCK_B, BLOCK_D)
    i, i_ok, start, end = _agents(rowptr, order, N, BLOCK_R)
    ok = i_ok[:, None] & lane_ok[None, :]
    acc = tl.zeros([BLOCK_R, BLOCK_B * BLOCK_D], dtype=out.dtype.element_ty)
    for t in range(0, tl.max(end - start, axis=0), BLOCK_E):
        e = start[:, None] + t + tl.arange(0, BLOCK_E)[None, :]
        e_ok = e < end[:, None]
        j = tl.load(col + e, mask=e_ok, other=0).to(tl.int64)
        m = e_ok[:, :, None] & ok[:, None, :]
        v = tl.load(x + (b[None, None, :] * N + j[:, :, None]) * D + k[None, None, :], mask=m, other=0.0)
        if HAS_EW:
            v = v * tl.load(ew + e, mask=e_ok, other=0.0)[:, :, None]
        if HAS_ES:
            v = v * tl.load(es + b[None, None, :] * es_sb + e[:, :, None], mask=m, other=0.0)
        acc += tl.sum(v, axis=1)
    tl.store(out + (b[None, :] * N + i[:, None]) * D + k[None, :], acc, mask=ok)


@triton.jit
def sum_cols_bwd(starts, order, perm, row, ew, es, g, x, gx, ges, N, B, D, E, es_sb, HAS_EW: tl.constexpr,
                 HAS_ES: tl.constexpr, NEED_X: tl.constexpr, NEED_ES: tl.constexpr, BLOCK_R: tl.constexpr,
                 BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """The backward of :func:`sum_rows_fwd` over each followee ``j``'s out-edges:
    ``gx_j = sum_e a_e es_be g_i`` and ``ges_be = a_e sum_k g_ik x_jk``."""
    b, k, lane_ok = _lanes(B, D, BLOCK_B, BLOCK_D)
    j, j_ok, start, end = _agents(starts, order, N, BLOCK_R)
    bb, bb_ok = _scenarios(B, BLOCK_B)
    ok = j_ok[:, None] & lane_ok[None, :]
    at_j = (b[None, :] * N + j[:, None]) * D + k[None, :]
    xj = tl.zeros([BLOCK_R, BLOCK_B * BLOCK_D], dtype=g.dtype.element_ty)
    if NEED_ES:
        xj = tl.load(x + at_j, mask=ok, other=0.0)
    acc = tl.zeros([BLOCK_R, BLOCK_B * BLOCK_D], dtype=g.dtype.element_ty)
    for t in range(0, tl.max(end - start, axis=0), BLOCK_E):
        p = start[:, None] + t + tl.arange(0, BLOCK_E)[None, :]
        p_ok = p < end[:, None]
        e = tl.load(perm + p, mask=p_ok, other=0).to(tl.int64)
        i = tl.load(row + e, mask=p_ok, other=0).to(tl.int64)
        m = p_ok[:, :, None] & ok[:, None, :]
        gi = tl.load(g + (b[None, None, :] * N + i[:, :, None]) * D + k[None, None, :], mask=m, other=0.0)
        if HAS_EW:
            gi = gi * tl.load(ew + e, mask=p_ok, other=0.0)[:, :, None]
        if NEED_ES:
            per_edge = tl.sum(tl.reshape(gi * xj[:, None, :], [BLOCK_R, BLOCK_E, BLOCK_B, BLOCK_D]), axis=3)
            tl.store(ges + bb[None, None, :] * E + e[:, :, None], per_edge,
                     mask=p_ok[:, :, None] & bb_ok[None, None, :])
        if NEED_X:
            if HAS_ES:
                gi = gi * tl.load(es + b[None, None, :] * es_sb + e[:, :, None], mask=m, other=0.0)
            acc += tl.sum(gi, axis=1)
    if NEED_X:
        tl.store(gx + at_j, acc, mask=ok)


@triton.jit
def followers_sum(starts, order, perm, values, out, N, B, D, E, BLOCK_R: tl.constexpr, BLOCK_E: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr):
    """``out_j = sum_e values_be`` over the out-edges ``e`` of each followee ``j``."""
    b, k, lane_ok = _lanes(B, D, BLOCK_B, BLOCK_D)
    j, j_ok, start, end = _agents(starts, order, N, BLOCK_R)
    ok = j_ok[:, None] & lane_ok[None, :]
    acc = tl.zeros([BLOCK_R, BLOCK_B * BLOCK_D], dtype=out.dtype.element_ty)
    for t in range(0, tl.max(end - start, axis=0), BLOCK_E):
        p = start[:, None] + t + tl.arange(0, BLOCK_E)[None, :]
        p_ok = p < end[:, None]
        e = tl.load(perm + p, mask=p_ok, other=0).to(tl.int64)
        m = p_ok[:, :, None] & ok[:, None, :]
        acc += tl.sum(tl.load(values + (b[None, None, :] * E + e[:, :, None]) * D + k[None, None, :], mask=m,
                              other=0.0), axis=1)
    tl.store(out + (b[None, :] * N + j[:, None]) * D + k[None, :], acc, mask=ok)

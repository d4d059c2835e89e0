// Fused CPU loops for lpm's hot edge aggregations (see fast.py for what each computes).
//
// One pass over the CSR rows (edges sorted by follower), per-row sums kept in registers, no
// per-edge temporaries. Plain C ABI (no torch headers): it compiles in about a second and is
// called through ctypes with raw pointers to contiguous tensors. Sums run in the data's dtype and
// in edge order, the order of the reference's scatter, so the pair-free ops agree with it bit for
// bit. Work is split by rows, balanced by edges; gradients that scatter to followees go to one
// buffer per thread, added in thread order, so a result depends only on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

// Largest state dimension d (callers check); 1 and 2 are compiled as constants.
constexpr int kMaxDim = 16;

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int thread_count() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// First rows of `parts` chunks of [0, N) holding about E / parts edges each; bounds[parts] = N.
template <typename I>
std::vector<int64_t> row_bounds(const I* rowptr, int64_t N, int parts) {
  std::vector<int64_t> bounds(parts + 1, N);
  const int64_t E = static_cast<int64_t>(rowptr[N]);
  bounds[0] = 0;
  for (int t = 1; t < parts; ++t) {
    const int64_t target = E * t / parts;
    int64_t row = std::lower_bound(rowptr, rowptr + N + 1, static_cast<I>(target)) - rowptr;
    bounds[t] = std::min(std::max(row, bounds[t - 1]), N);
  }
  return bounds;
}

// Edge ranges of `parts` chunks of [0, E) that never split a follower's edges (row sorted).
std::vector<int64_t> edge_bounds(const int64_t* row, int64_t E, int parts) {
  std::vector<int64_t> bounds(parts + 1, E);
  bounds[0] = 0;
  for (int t = 1; t < parts; ++t) {
    int64_t e = std::max(E * t / parts, bounds[t - 1]);
    while (e > 0 && e < E && row[e] == row[e - 1]) ++e;
    bounds[t] = e;
  }
  return bounds;
}

template <typename T>
inline T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

template <typename T>
inline T sign(T v) {
  return static_cast<T>((v > T(0)) - (v < T(0)));
}

// Pair kernel w(d) with d = |x_j - x_i| and its derivatives. kind 1: smooth bounded confidence,
// kind 2: attraction-repulsion. eps is per receiver (a broadcast (B, N, d) view by strides) or a
// scalar.
template <typename T>
struct Pair {
  int kind;
  const T* eps;
  int64_t esb, esn, esd;
  T eps0, tau, rho, rep;

  inline T eps_at(int64_t b, int64_t i, int64_t k) const {
    return eps ? eps[b * esb + i * esn + k * esd] : eps0;
  }
  // The reference's arithmetic: sigmoid((eps - d) / tau) [- rep * sigmoid((d - rho) / tau)].
  inline T weight(T dist, T e) const {
    T w = sigmoid((e - dist) / tau);
    if (kind == 2) w = w - rep * sigmoid((dist - rho) / tau);
    return w;
  }
  // w and dw/d(dist), dw/d(eps), dw/d(tau), dw/d(rho), dw/d(rep).
  inline void grad(T dist, T e, T& w, T& d_dist, T& d_eps, T& d_tau, T& d_rho, T& d_rep) const {
    const T z1 = (e - dist) / tau;
    const T s1 = sigmoid(z1);
    const T g1 = s1 * (T(1) - s1) / tau;
    w = s1;
    d_dist = -g1;
    d_eps = g1;
    d_tau = -g1 * z1;
    d_rho = T(0);
    d_rep = T(0);
    if (kind == 2) {
      const T z2 = (dist - rho) / tau;
      const T s2 = sigmoid(z2);
      const T g2 = s2 * (T(1) - s2) / tau;
      w = w - rep * s2;
      d_dist -= rep * g2;
      d_tau += rep * g2 * z2;
      d_rho = rep * g2;
      d_rep = -s2;
    }
  }
};

// Adds the per-thread buffers 1..T-1 into buffer 0 (the output), in thread order.
template <typename T>
void reduce_buffers(T* out, std::vector<std::vector<T>>& buffers, int64_t size) {
  const int parts = static_cast<int>(buffers.size());
  if (parts <= 1) return;
#pragma omp parallel for num_threads(parts) schedule(static)
  for (int64_t k = 0; k < size; ++k) {
    T total = out[k];
    for (int t = 1; t < parts; ++t) total += buffers[t][k];
    out[k] = total;
  }
}

// ------------------------------------------------------------------ neighbor pull, no pair kernel
// With s: pull = sum_e a_e s_j x_j - W x_i, W = sum_e a_e s_j (written to weight, (B, N, 1)).
// Without: pull = sum_e a_e x_j - inw_i x_i.
template <typename T, typename I, int D>
void plain_forward_rows(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col,
                        const T* ew, const T* x, const T* s, const T* inw, T* pull, T* weight) {
  if (D > 0) d = D;  // a compile-time dimension: per-row sums stay in registers
  T acc[kMaxDim];
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    const T* sb = s ? s + b * N : nullptr;
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t k = 0; k < d; ++k) acc[k] = T(0);
      T w_sum = T(0);
      const int64_t end = rowptr[i + 1];
      if (sb) {
        for (int64_t e = rowptr[i]; e < end; ++e) {
          const int64_t j = col[e];
          const T g = sb[j];
          if (g == T(0)) continue;  // adds (+/-)0 in the reference
          const T* xj = xb + j * d;
          if (ew) {
            const T a = ew[e];
            for (int64_t k = 0; k < d; ++k) acc[k] += (g * xj[k]) * a;
            w_sum += g * a;
          } else {
            for (int64_t k = 0; k < d; ++k) acc[k] += g * xj[k];
            w_sum += g;
          }
        }
      } else if (ew) {
        for (int64_t e = rowptr[i]; e < end; ++e) {
          const T* xj = xb + static_cast<int64_t>(col[e]) * d;
          const T a = ew[e];
          for (int64_t k = 0; k < d; ++k) acc[k] += xj[k] * a;
        }
      } else {
        for (int64_t e = rowptr[i]; e < end; ++e) {
          const T* xj = xb + static_cast<int64_t>(col[e]) * d;
          for (int64_t k = 0; k < d; ++k) acc[k] += xj[k];
        }
      }
      const T w = sb ? w_sum : inw[i];
      const T* xi = xb + i * d;
      T* out = pull + (b * N + i) * d;
      for (int64_t k = 0; k < d; ++k) out[k] = acc[k] - w * xi[k];
      if (sb) weight[b * N + i] = w_sum;
    }
  }
}

// Row loops run in functions of their own, called with by-value arguments from the parallel
// region: code inside an OpenMP region reads the enclosing function's variables through pointers,
// which keeps the compiler from holding them (or the per-row sums) in registers (10x slower).
template <typename T, typename I, int D>
void plain_forward(int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col, const T* ew, const T* x,
                   const T* s, const T* inw, T* pull, T* weight, int threads) {
  if (threads <= 1) return plain_forward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, x, s, inw, pull, weight);
#pragma omp parallel num_threads(threads)
  {
    const std::vector<int64_t> bounds = row_bounds(rowptr, N, thread_count());
    const int tid = thread_id();
    plain_forward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew, x, s, inw, pull, weight);
  }
}

// Gradients of plain_forward: gx (B, N, d) and, with s, gs (B, N); both zeroed by the caller.
// wsum: the forward's W, (B, N) with s, inw (N,) without.
template <typename T, typename I, int D>
void plain_backward_rows(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col,
                         const T* ew, const T* x, const T* s, const T* wsum, const T* gp, const T* gw, T* my_gx,
                         T* my_gs) {
  if (D > 0) d = D;
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    const T* sb = s ? s + b * N : nullptr;
    for (int64_t i = lo; i < hi; ++i) {
      const T* gpi = gp + (b * N + i) * d;
      const T* xi = xb + i * d;
      const T w = s ? wsum[b * N + i] : wsum[i];
      T* gxi = my_gx + (b * N + i) * d;
      for (int64_t k = 0; k < d; ++k) gxi[k] -= w * gpi[k];
      T h = T(0);  // dL/dW_i = gw_i - sum_k gp_ik x_ik
      if (my_gs) {
        h = gw ? gw[b * N + i] : T(0);
        for (int64_t k = 0; k < d; ++k) h -= gpi[k] * xi[k];
      }
      for (int64_t e = rowptr[i]; e < static_cast<int64_t>(rowptr[i + 1]); ++e) {
        const int64_t j = col[e];
        const T a = ew ? ew[e] : T(1);
        const T c = sb ? sb[j] * a : a;
        T* gxj = my_gx + (b * N + j) * d;
        if (c != T(0))
          for (int64_t k = 0; k < d; ++k) gxj[k] += c * gpi[k];
        if (my_gs) {
          const T* xj = xb + j * d;
          T dot = h;
          for (int64_t k = 0; k < d; ++k) dot += gpi[k] * xj[k];
          my_gs[b * N + j] += a * dot;
        }
      }
    }
  }
}

// Gradients of plain_forward: gx (B, N, d) and, with s, gs (B, N); both zeroed by the caller.
// wsum: the forward's W, (B, N) with s, inw (N,) without.
template <typename T, typename I, int D>
void plain_backward(int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col, const T* ew, const T* x,
                    const T* s, const T* wsum, const T* gp, const T* gw, T* gx, T* gs, int threads) {
  if (threads <= 1)
    return plain_backward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, x, s, wsum, gp, gw, gx, gs);
  std::vector<std::vector<T>> bx, bs;
#pragma omp parallel num_threads(threads)
  {
    const int parts = thread_count(), tid = thread_id();
#pragma omp single
    {
      bx.resize(parts);
      bs.resize(parts);
    }
    if (tid > 0) {
      bx[tid].assign(B * N * d, T(0));
      if (gs) bs[tid].assign(B * N, T(0));
    }
    const std::vector<int64_t> bounds = row_bounds(rowptr, N, parts);
    plain_backward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew, x, s, wsum, gp, gw,
                                 tid == 0 ? gx : bx[tid].data(), gs ? (tid == 0 ? gs : bs[tid].data()) : nullptr);
  }
  reduce_buffers(gx, bx, B * N * d);
  if (gs) reduce_buffers(gs, bs, B * N);
}

// ------------------------------------------------------------------ neighbor pull, pair kernel
template <typename T, typename I, int D>
void pair_forward_rows(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col,
                       const T* ew, const T* x, const T* s, const Pair<T> pair, T* pull, T* weight) {
  if (D > 0) d = D;
  T acc[kMaxDim], acc_w[kMaxDim];
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    const T* sb = s ? s + b * N : nullptr;
    for (int64_t i = lo; i < hi; ++i) {
      for (int64_t k = 0; k < d; ++k) acc[k] = acc_w[k] = T(0);
      const T* xi = xb + i * d;
      for (int64_t e = rowptr[i]; e < static_cast<int64_t>(rowptr[i + 1]); ++e) {
        const int64_t j = col[e];
        T g = T(1);
        if (sb) {
          g = sb[j];
          if (g == T(0)) continue;  // w = 0: adds (+/-)0 in the reference
        }
        const T* xj = xb + j * d;
        for (int64_t k = 0; k < d; ++k) {
          const T diff = xj[k] - xi[k];
          T w = pair.weight(std::abs(diff), pair.eps_at(b, i, k));
          if (sb) w = w * g;
          if (ew) w = w * ew[e];
          acc[k] += w * diff;
          acc_w[k] += std::abs(w);
        }
      }
      T* p = pull + (b * N + i) * d;
      T* q = weight + (b * N + i) * d;
      for (int64_t k = 0; k < d; ++k) {
        p[k] = acc[k];
        q[k] = acc_w[k];
      }
    }
  }
}

// w_e = K(|x_j - x_i|) s_j a_e per dimension; pull = sum_e w_e (x_j - x_i), weight = sum_e |w_e|.
template <typename T, typename I, int D>
void pair_forward(int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col, const T* ew, const T* x,
                  const T* s, const Pair<T>& pair, T* pull, T* weight, int threads) {
  if (threads <= 1) return pair_forward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, x, s, pair, pull, weight);
#pragma omp parallel num_threads(threads)
  {
    const std::vector<int64_t> bounds = row_bounds(rowptr, N, thread_count());
    const int tid = thread_id();
    pair_forward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew, x, s, pair, pull, weight);
  }
}

template <typename T, typename I, int D>
void pair_backward_rows(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col,
                        const T* ew, const T* x, const T* s, const Pair<T> pair, const T* gp, const T* gw, T* my_gx,
                        T* my_gs, T* geps, int need, double* scalars) {
  if (D > 0) d = D;
  const bool scalar_eps = pair.eps == nullptr;
  const bool need_eps = need & 1, need_tau = need & 2, need_rho = need & 4, need_rep = need & 8;
  double sum_eps = 0.0, sum_tau = 0.0, sum_rho = 0.0, sum_rep = 0.0;
  T gxi[kMaxDim], g_eps[kMaxDim];
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    const T* sb = s ? s + b * N : nullptr;
    for (int64_t i = lo; i < hi; ++i) {
      const T* xi = xb + i * d;
      const T* gpi = gp + (b * N + i) * d;
      const T* gwi = gw ? gw + (b * N + i) * d : nullptr;
      for (int64_t k = 0; k < d; ++k) gxi[k] = g_eps[k] = T(0);
      for (int64_t e = rowptr[i]; e < static_cast<int64_t>(rowptr[i + 1]); ++e) {
        const int64_t j = col[e];
        const T a = ew ? ew[e] : T(1);
        const T c = sb ? sb[j] * a : a;  // what multiplies the pair kernel
        const T* xj = xb + j * d;
        if (c == T(0)) {
          // w = 0: only s_j's gradient, sum_k gp_ik (x_jk - x_ik) K_k a, is nonzero
          if (!my_gs) continue;
          T g_source = T(0);
          for (int64_t k = 0; k < d; ++k) {
            const T diff = xj[k] - xi[k];
            g_source += (gpi[k] * diff) * pair.weight(std::abs(diff), pair.eps_at(b, i, k)) * a;
          }
          my_gs[b * N + j] += g_source;
          continue;
        }
        T* gxj = my_gx + (b * N + j) * d;
        T g_source = T(0);
        for (int64_t k = 0; k < d; ++k) {
          const T diff = xj[k] - xi[k];
          const T dist = std::abs(diff);
          T K, d_dist, d_eps, d_tau, d_rho, d_rep;
          pair.grad(dist, pair.eps_at(b, i, k), K, d_dist, d_eps, d_tau, d_rho, d_rep);
          const T w = K * c;
          const T g_w = gpi[k] * diff + (gwi ? gwi[k] * sign(w) : T(0));  // dL/dw
          const T g_k = g_w * c;                                          // dL/dK
          g_source += g_w * K * a;
          const T g_diff = gpi[k] * w + g_k * d_dist * sign(diff);
          gxj[k] += g_diff;
          gxi[k] -= g_diff;
          g_eps[k] += g_k * d_eps;
          if (need_tau) sum_tau += static_cast<double>(g_k * d_tau);
          if (need_rho) sum_rho += static_cast<double>(g_k * d_rho);
          if (need_rep) sum_rep += static_cast<double>(g_k * d_rep);
        }
        if (my_gs) my_gs[b * N + j] += g_source;
      }
      T* out = my_gx + (b * N + i) * d;
      for (int64_t k = 0; k < d; ++k) out[k] += gxi[k];
      if (need_eps) {
        if (scalar_eps)
          for (int64_t k = 0; k < d; ++k) sum_eps += static_cast<double>(g_eps[k]);
        else
          for (int64_t k = 0; k < d; ++k) geps[b * pair.esb + i * pair.esn + k * pair.esd] += g_eps[k];
      }
    }
  }
  scalars[0] += sum_eps;
  scalars[1] += sum_tau;
  scalars[2] += sum_rho;
  scalars[3] += sum_rep;
}

// Gradients of pair_forward. gx zeroed (B, N, d); gs zeroed (B, N) or null; geps zeroed, laid out
// like eps (strides esb/esn/esd, per receiver) or null; scalars[0..3] += d eps (scalar eps), d tau,
// d rho, d rep, for the bits 1, 2, 4, 8 of `need`. With gs, edges with s_j = 0 are visited too
// (their s_j gets a gradient).
template <typename T, typename I, int D>
void pair_backward(int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col, const T* ew, const T* x,
                   const T* s, const Pair<T>& pair, const T* gp, const T* gw, T* gx, T* gs, T* geps, int need,
                   double* scalars, int threads) {
  if (threads <= 1)
    return pair_backward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, x, s, pair, gp, gw, gx, gs, geps, need,
                                       scalars);
  std::vector<std::vector<T>> bx, bs;
  std::vector<std::vector<double>> bscalar;
#pragma omp parallel num_threads(threads)
  {
    const int parts = thread_count(), tid = thread_id();
#pragma omp single
    {
      bx.resize(parts);
      bs.resize(parts);
      bscalar.assign(parts, std::vector<double>(4, 0.0));
    }
    if (tid > 0) {
      bx[tid].assign(B * N * d, T(0));
      if (gs) bs[tid].assign(B * N, T(0));
    }
    const std::vector<int64_t> bounds = row_bounds(rowptr, N, parts);
    // geps is per receiver (rows are owned by one thread), so it needs no per-thread copy
    pair_backward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew, x, s, pair, gp, gw,
                                tid == 0 ? gx : bx[tid].data(), gs ? (tid == 0 ? gs : bs[tid].data()) : nullptr,
                                geps, need, bscalar[tid].data());
  }
  reduce_buffers(gx, bx, B * N * d);
  if (gs) reduce_buffers(gs, bs, B * N);
  for (const auto& part : bscalar)
    for (int k = 0; k < 4; ++k) scalars[k] += part[k];
}

// ------------------------------------------------------------------ gated pulls pushed from the sources
// The followers of each agent (the transpose, built once per graph): starts (N + 1), follower and
// edge id of each out-edge, in edge order, so each follower meets its followees in ascending order,
// the order of its CSR row.
template <typename I>
void transpose(int64_t N, const I* rowptr, const I* col, int64_t* starts, I* follower, I* edge) {
  std::fill(starts, starts + N + 1, int64_t(0));
  const int64_t E = static_cast<int64_t>(rowptr[N]);
  for (int64_t e = 0; e < E; ++e) ++starts[static_cast<int64_t>(col[e]) + 1];
  for (int64_t j = 0; j < N; ++j) starts[j + 1] += starts[j];
  std::vector<int64_t> next(starts, starts + N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t e = rowptr[i]; e < static_cast<int64_t>(rowptr[i + 1]); ++e) {
      const int64_t p = next[static_cast<int64_t>(col[e])]++;
      follower[p] = static_cast<I>(i);
      edge[p] = static_cast<I>(e);
    }
}

// Out-edges of the agents with a nonzero source weight, over all scenarios.
template <typename T>
int64_t pushed_edges(int64_t B, int64_t N, const T* s, const int64_t* starts) {
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < N; ++j)
      if (s[b * N + j] != T(0)) total += starts[j + 1] - starts[j];
  return total;
}

// plain_forward / pair_forward (kind 0 / 1, 2) with a source weight, visiting only the out-edges
// of sources with s_j != 0: the same terms, added per follower in the same order, so the same bits.
// Serial: used when those edges are a small share of all.
template <typename T, typename I, int D>
void push_forward(int64_t B, int64_t N, int64_t d, const int64_t* starts, const I* follower, const I* edge,
                  const T* ew, const T* x, const T* s, const Pair<T>& pair, T* pull, T* weight) {
  if (D > 0) d = D;  // a compile-time dimension: per-row sums stay in registers
  const int64_t wd = pair.kind == 0 ? 1 : d;
  std::fill(pull, pull + B * N * d, T(0));
  std::fill(weight, weight + B * N * wd, T(0));
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    T* pb = pull + b * N * d;
    T* wb = weight + b * N * wd;
    for (int64_t j = 0; j < N; ++j) {
      const T g = s[b * N + j];
      if (g == T(0)) continue;
      const T* xj = xb + j * d;
      for (int64_t p = starts[j]; p < starts[j + 1]; ++p) {
        const int64_t i = follower[p];
        T* pi = pb + i * d;
        if (pair.kind == 0) {
          if (ew) {
            const T a = ew[edge[p]];
            for (int64_t k = 0; k < d; ++k) pi[k] += (g * xj[k]) * a;
            wb[i] += g * a;
          } else {
            for (int64_t k = 0; k < d; ++k) pi[k] += g * xj[k];
            wb[i] += g;
          }
          continue;
        }
        const T* xi = xb + i * d;
        T* wi = wb + i * d;
        for (int64_t k = 0; k < d; ++k) {
          const T diff = xj[k] - xi[k];
          T w = pair.weight(std::abs(diff), pair.eps_at(b, i, k)) * g;
          if (ew) w = w * ew[edge[p]];
          pi[k] += w * diff;
          wi[k] += std::abs(w);
        }
      }
    }
    if (pair.kind == 0)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t k = 0; k < d; ++k) pb[i * d + k] = pb[i * d + k] - wb[i] * xb[i * d + k];
  }
}

// ------------------------------------------------------------------ neighbor sum
template <typename T, typename I, int D>
void sum_forward_edges(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, int64_t E, const I* col,
                       const int64_t* row, const T* ew, const T* x, const T* scale, T* out) {
  if (D > 0) d = D;
  T acc[kMaxDim];
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    const T* sc = scale ? scale + b * E : nullptr;
    T* ob = out + b * N * d;
    for (int64_t e = lo; e < hi;) {  // one follower's run of edges at a time
      const int64_t i = row[e];
      for (int64_t k = 0; k < d; ++k) acc[k] = T(0);
      for (; e < hi && row[e] == i; ++e) {
        const T* xj = xb + static_cast<int64_t>(col[e]) * d;
        for (int64_t k = 0; k < d; ++k) {
          T v = xj[k];
          if (ew) v = v * ew[e];
          if (sc) v = v * sc[e];
          acc[k] += v;
        }
      }
      for (int64_t k = 0; k < d; ++k) ob[i * d + k] += acc[k];  // 0 + acc: the reference's bits
    }
  }
}

// out[b, i] = sum over edges e = (j -> i) of a_e scale[b, e] x[b, j]; out zeroed by the caller.
// Edges are walked in order with their follower `row` (sorted), as the reference's scatter adds them.
template <typename T, typename I, int D>
void sum_forward(int64_t B, int64_t N, int64_t d, int64_t E, const I* col, const int64_t* row, const T* ew,
                 const T* x, const T* scale, T* out, int threads) {
  if (threads <= 1) return sum_forward_edges<T, I, D>(0, E, B, N, d, E, col, row, ew, x, scale, out);
#pragma omp parallel num_threads(threads)
  {
    const std::vector<int64_t> bounds = edge_bounds(row, E, thread_count());
    const int tid = thread_id();
    sum_forward_edges<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, E, col, row, ew, x, scale, out);
  }
}

template <typename T, typename I>
void sum_backward_edges(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, int64_t E, const I* col,
                        const int64_t* row, const T* ew, const T* x, const T* scale, const T* g, T* my_gx,
                        T* gscale) {
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    const T* gb = g + b * N * d;
    const T* sc = scale ? scale + b * E : nullptr;
    T* gxb = my_gx + b * N * d;
    for (int64_t e = lo; e < hi; ++e) {
      const int64_t j = col[e];
      const T* gi = gb + row[e] * d;
      const T a = ew ? ew[e] : T(1);
      T* gxj = gxb + j * d;
      for (int64_t k = 0; k < d; ++k) {  // the reference's chain rule: (g * scale) * a
        T v = gi[k];
        if (sc) v = v * sc[e];
        if (ew) v = v * a;
        gxj[k] += v;
      }
      if (gscale) {
        const T* xj = xb + j * d;
        T dot = T(0);
        for (int64_t k = 0; k < d; ++k) dot += gi[k] * (ew ? xj[k] * a : xj[k]);
        gscale[b * E + e] = dot;
      }
    }
  }
}

// gx[b, j] += a_e scale[b, e] g[b, i]; gscale[b, e] = sum_k g[b, i, k] (x[b, j, k] a_e) (or null).
template <typename T, typename I>
void sum_backward(int64_t B, int64_t N, int64_t d, int64_t E, const I* col, const int64_t* row, const T* ew,
                  const T* x, const T* scale, const T* g, T* gx, T* gscale, int threads) {
  if (threads <= 1) return sum_backward_edges<T, I>(0, E, B, N, d, E, col, row, ew, x, scale, g, gx, gscale);
  std::vector<std::vector<T>> bx;
#pragma omp parallel num_threads(threads)
  {
    const int parts = thread_count(), tid = thread_id();
#pragma omp single
    bx.resize(parts);
    if (tid > 0) bx[tid].assign(B * N * d, T(0));
    const std::vector<int64_t> bounds = edge_bounds(row, E, parts);
    sum_backward_edges<T, I>(bounds[tid], bounds[tid + 1], B, N, d, E, col, row, ew, x, scale, g,
                             tid == 0 ? gx : bx[tid].data(), gscale);
  }
  reduce_buffers(gx, bx, B * N * d);
}

template <typename T>
Pair<T> make_pair(int kind, const void* eps, int64_t esb, int64_t esn, int64_t esd, double eps0, double tau,
                  double rho, double rep) {
  return Pair<T>{kind, static_cast<const T*>(eps), esb, esn, esd, static_cast<T>(eps0), static_cast<T>(tau),
                 static_cast<T>(rho), static_cast<T>(rep)};
}

}  // namespace

// dtype: 0 float32, 1 float64; index: 0 int32, 1 int64. Returns 0, or -1 for an unknown code.
#define LPM_DISPATCH(dtype, index, ...)                                                     \
  do {                                                                                     \
    if (dtype == 0 && index == 0) { using T = float; using I = int32_t; __VA_ARGS__; }        \
    else if (dtype == 0 && index == 1) { using T = float; using I = int64_t; __VA_ARGS__; }   \
    else if (dtype == 1 && index == 0) { using T = double; using I = int32_t; __VA_ARGS__; }  \
    else if (dtype == 1 && index == 1) { using T = double; using I = int64_t; __VA_ARGS__; }  \
    else return -1;                                                                        \
  } while (0)

// LPM_DISPATCH with D = d for d in {1, 2}, else D = 0 (d read at run time, <= kMaxDim).
#define LPM_DISPATCH_D(dtype, index, d, ...)                                   \
  do {                                                                        \
    if (d > kMaxDim) return -2;                                               \
    if (d == 1) { constexpr int D = 1; LPM_DISPATCH(dtype, index, __VA_ARGS__); } \
    else if (d == 2) { constexpr int D = 2; LPM_DISPATCH(dtype, index, __VA_ARGS__); } \
    else { constexpr int D = 0; LPM_DISPATCH(dtype, index, __VA_ARGS__); }     \
  } while (0)

extern "C" {

int lpm_plain_forward(int dtype, int index, int64_t B, int64_t N, int64_t d, const void* rowptr, const void* col,
                      const void* ew, const void* x, const void* s, const void* inw, void* pull, void* weight,
                      int threads) {
  LPM_DISPATCH_D(dtype, index, d,
               plain_forward<T, I, D>(B, N, d, (const I*)rowptr, (const I*)col, (const T*)ew, (const T*)x,
                                   (const T*)s, (const T*)inw, (T*)pull, (T*)weight, threads));
  return 0;
}

int lpm_plain_backward(int dtype, int index, int64_t B, int64_t N, int64_t d, const void* rowptr,
                       const void* col, const void* ew, const void* x, const void* s, const void* wsum,
                       const void* gp, const void* gw, void* gx, void* gs, int threads) {
  LPM_DISPATCH_D(dtype, index, d,
               plain_backward<T, I, D>(B, N, d, (const I*)rowptr, (const I*)col, (const T*)ew, (const T*)x,
                                    (const T*)s, (const T*)wsum, (const T*)gp, (const T*)gw, (T*)gx, (T*)gs,
                                    threads));
  return 0;
}

int lpm_pair_forward(int dtype, int index, int64_t B, int64_t N, int64_t d, const void* rowptr, const void* col,
                     const void* ew, const void* x, const void* s, int kind, const void* eps, int64_t esb,
                     int64_t esn, int64_t esd, double eps0, double tau, double rho, double rep, void* pull,
                     void* weight, int threads) {
  LPM_DISPATCH_D(dtype, index, d,
               pair_forward<T, I, D>(B, N, d, (const I*)rowptr, (const I*)col, (const T*)ew, (const T*)x,
                                  (const T*)s, make_pair<T>(kind, eps, esb, esn, esd, eps0, tau, rho, rep),
                                  (T*)pull, (T*)weight, threads));
  return 0;
}

int lpm_pair_backward(int dtype, int index, int64_t B, int64_t N, int64_t d, const void* rowptr,
                      const void* col, const void* ew, const void* x, const void* s, int kind, const void* eps,
                      int64_t esb, int64_t esn, int64_t esd, double eps0, double tau, double rho, double rep,
                      const void* gp, const void* gw, void* gx, void* gs, void* geps, int need, double* scalars,
                      int threads) {
  LPM_DISPATCH_D(dtype, index, d,
               pair_backward<T, I, D>(B, N, d, (const I*)rowptr, (const I*)col, (const T*)ew, (const T*)x,
                                   (const T*)s, make_pair<T>(kind, eps, esb, esn, esd, eps0, tau, rho, rep),
                                   (const T*)gp, (const T*)gw, (T*)gx, (T*)gs, (T*)geps, need, scalars,
                                      threads));
  return 0;
}

int lpm_transpose(int index, int64_t N, const void* rowptr, const void* col, int64_t* starts, void* follower,
                  void* edge) {
  if (index == 0) transpose<int32_t>(N, (const int32_t*)rowptr, (const int32_t*)col, starts, (int32_t*)follower,
                                     (int32_t*)edge);
  else if (index == 1) transpose<int64_t>(N, (const int64_t*)rowptr, (const int64_t*)col, starts,
                                          (int64_t*)follower, (int64_t*)edge);
  else return -1;
  return 0;
}

// A pull gated by s (kind 0: no pair kernel), pushed from the sources when their out-edges are
// under a quarter of all edges, else the row-parallel pull. Returns 1 when it pushed.
int lpm_gated_forward(int dtype, int index, int64_t B, int64_t N, int64_t d, const void* rowptr, const void* col,
                      const int64_t* starts, const void* follower, const void* edge, const void* ew, const void* x,
                      const void* s, int kind, const void* eps, int64_t esb, int64_t esn, int64_t esd, double eps0,
                      double tau, double rho, double rep, void* pull, void* weight, int threads) {
  int pushed = 0;
  LPM_DISPATCH_D(dtype, index, d, {
    const Pair<T> pair = make_pair<T>(kind, eps, esb, esn, esd, eps0, tau, rho, rep);
    const int64_t E = static_cast<int64_t>(((const I*)rowptr)[N]);
    if (4 * pushed_edges<T>(B, N, (const T*)s, starts) < B * E) {
      push_forward<T, I, D>(B, N, d, starts, (const I*)follower, (const I*)edge, (const T*)ew, (const T*)x,
                         (const T*)s, pair, (T*)pull, (T*)weight);
      pushed = 1;
    } else if (kind == 0) {
      plain_forward<T, I, D>(B, N, d, (const I*)rowptr, (const I*)col, (const T*)ew, (const T*)x, (const T*)s,
                          nullptr, (T*)pull, (T*)weight, threads);
    } else {
      pair_forward<T, I, D>(B, N, d, (const I*)rowptr, (const I*)col, (const T*)ew, (const T*)x, (const T*)s, pair,
                         (T*)pull, (T*)weight, threads);
    }
  });
  return pushed;
}

int lpm_sum_forward(int dtype, int index, int64_t B, int64_t N, int64_t d, int64_t E, const void* col,
                    const int64_t* row, const void* ew, const void* x, const void* scale, void* out, int threads) {
  LPM_DISPATCH_D(dtype, index, d,
               sum_forward<T, I, D>(B, N, d, E, (const I*)col, row, (const T*)ew, (const T*)x, (const T*)scale,
                                 (T*)out, threads));
  return 0;
}

int lpm_sum_backward(int dtype, int index, int64_t B, int64_t N, int64_t d, int64_t E, const void* col,
                     const int64_t* row, const void* ew, const void* x, const void* scale, const void* g,
                     void* gx, void* gscale, int threads) {
  LPM_DISPATCH(dtype, index,
               sum_backward<T, I>(B, N, d, E, (const I*)col, row, (const T*)ew, (const T*)x, (const T*)scale,
                                  (const T*)g, (T*)gx, (T*)gscale, threads));
  return 0;
}

}  // extern "C"

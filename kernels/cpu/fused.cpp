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
#include <cstring>
#include <limits>
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
  // The backward evaluates the kernel's sigmoids from one exp per edge (see kernel_sigmoids).
  inline T ratio(T e, T inv_tau) const { return kind == 2 ? std::exp((rho - e) * inv_tau) : T(1); }
  inline T weight_from(T s1, T s2) const { return kind == 2 ? s1 - rep * s2 : s1; }
  // grad() from the sigmoids s1 = sigmoid((e - dist) / tau), s2 = sigmoid((dist - rho) / tau).
  inline void grad_from(T s1, T s2, T dist, T e, T inv_tau, T& w, T& d_dist, T& d_eps, T& d_tau, T& d_rho,
                        T& d_rep) const {
    const T g1 = s1 * (T(1) - s1) * inv_tau;
    w = s1;
    d_dist = -g1;
    d_eps = g1;
    d_tau = -g1 * ((e - dist) * inv_tau);
    d_rho = T(0);
    d_rep = T(0);
    if (kind == 2) {
      const T g2 = s2 * (T(1) - s2) * inv_tau;
      w = w - rep * s2;
      d_dist -= rep * g2;
      d_tau += rep * g2 * ((dist - rho) * inv_tau);
      d_rho = rep * g2;
      d_rep = -s2;
    }
  }
};

// exp(x) for |x| <= kExpRange, branch-free so that loops over it vectorise: 2^n exp(r) with
// n = round(x / ln 2), r = x - n ln 2 (in two parts), exp(r) by a degree-7 Taylor-like polynomial
// (Cephes' expf coefficients; within 0.7 ulp of exp on [-80, 80], measured). Doubles use std::exp.
constexpr float kExpRange = 80.0f;

inline float exp_bounded(float x) {
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer (round to nearest)
  const float t = x * 1.44269504088896341f + shift;
  const float n = t - shift;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  // 2^n from t's bits: its low mantissa bits hold n (two's complement) while |n| < 2^22; unsigned
  // arithmetic, so a larger x (recomputed by the caller) gives a wrong value, not undefined behaviour
  uint32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof t_bits);
  const uint32_t bits = (t_bits - 0x4B400000u + 127u) << 23;  // 0x4B400000: the bits of `shift`
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

inline double exp_bounded(double x) { return std::exp(x); }

// The pair kernel's two sigmoids for m (edge, dimension) entries, as the backward needs them:
// s1 = sigmoid((e - dist) / tau) and s2 = sigmoid((dist - rho) / tau) from one exp, since with
// q = exp((dist - e) / tau), s1 = 1 / (1 + q) and s2 = q / (q + c) where c = exp((rho - e) / tau)
// is the receiver's `ratio`. The loop has no branch (it vectorises for floats); entries whose
// exponents leave +-kExpRange are then computed directly. Agrees with Pair::grad to rounding.
template <typename T>
void kernel_sigmoids(int64_t m, const T* dist, const T* eps, const T* ratio, T inv_tau, T rho, T* s1, T* s2) {
  int out_of_range = 0;
  for (int64_t t = 0; t < m; ++t) {
    const T z = (dist[t] - eps[t]) * inv_tau;
    const T q = exp_bounded(z);
    s1[t] = T(1) / (T(1) + q);
    s2[t] = q / (q + ratio[t]);
    out_of_range |= static_cast<int>(z > T(kExpRange)) | static_cast<int>(z < T(-kExpRange));
  }
  if (!out_of_range) {  // the ratios are checked per row (see pair_backward_rows)
    return;
  }
  for (int64_t t = 0; t < m; ++t) {
    const T z = (dist[t] - eps[t]) * inv_tau;
    if (z > T(kExpRange) || z < T(-kExpRange)) {
      s1[t] = sigmoid(-z);
      s2[t] = sigmoid((dist[t] - rho) * inv_tau);
    }
  }
}

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

// Where a backward row loop finds each agent's x (d values), source weight s and the slot that
// accumulates dL/ds: separate arrays (strides d, 1, 1), or one record per agent [x (d), s, dL/ds]
// when x needs no gradient, so that an edge's random accesses to its followee hit one cache line
// instead of three (the backward's edge loops are bound by those misses).
template <typename T>
struct Nodes {
  const T* x;
  const T* s;
  T* gs;
  int64_t xs, ss, gss;
};

template <typename T>
Nodes<T> separate(const T* x, const T* s, T* gs, int64_t d) {
  return Nodes<T>{x, s, gs, d, 1, 1};
}

// Records [x (d), s, 0] for every scenario and agent; s = 1 where there is none.
template <typename T>
std::vector<T> pack(int64_t B, int64_t N, int64_t d, const T* x, const T* s) {
  const int64_t width = d + 2;
  std::vector<T> records(B * N * width);
  for (int64_t n = 0; n < B * N; ++n) {
    T* r = records.data() + n * width;
    for (int64_t k = 0; k < d; ++k) r[k] = x[n * d + k];
    r[d] = s ? s[n] : T(1);
    r[d + 1] = T(0);
  }
  return records;
}

template <typename T>
Nodes<T> packed(std::vector<T>& records, const T* s, int64_t d) {
  return Nodes<T>{records.data(), s ? records.data() + d : nullptr, records.data() + d + 1, d + 2, d + 2, d + 2};
}

// gs = the dL/ds slots of the per-thread records, added in thread order.
template <typename T>
void unpack_gs(T* gs, const std::vector<std::vector<T>>& records, int64_t size, int64_t d) {
  const int64_t width = d + 2;
  for (int64_t n = 0; n < size; ++n) {
    T total = records[0][n * width + d + 1];
    for (size_t t = 1; t < records.size(); ++t) total += records[t][n * width + d + 1];
    gs[n] = total;
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

// Gradients of plain_forward: gx (B, N, d) or null (not wanted) and, with s, gs (B, N) (in `nodes`).
// wsum: the forward's W, (B, N) with s, inw (N,) without.
template <typename T, typename I, int D>
void plain_backward_rows(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col,
                         const T* ew, const Nodes<T> nodes, const T* wsum, const T* gp, const T* gw, T* my_gx) {
  if (D > 0) d = D;
  const int64_t xs = nodes.xs, ss = nodes.ss, gss = nodes.gss;
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = nodes.x + b * N * xs;
    const T* sb = nodes.s ? nodes.s + b * N * ss : nullptr;
    T* gsb = nodes.gs ? nodes.gs + b * N * gss : nullptr;
    for (int64_t i = lo; i < hi; ++i) {
      const T* gpi = gp + (b * N + i) * d;
      const T* xi = xb + i * xs;
      const T w = sb ? wsum[b * N + i] : wsum[i];
      if (my_gx) {
        T* gxi = my_gx + (b * N + i) * d;
        for (int64_t k = 0; k < d; ++k) gxi[k] -= w * gpi[k];
      }
      T h = T(0);  // dL/dW_i = gw_i - sum_k gp_ik x_ik
      if (gsb) {
        h = gw ? gw[b * N + i] : T(0);
        for (int64_t k = 0; k < d; ++k) h -= gpi[k] * xi[k];
      }
      for (int64_t e = rowptr[i]; e < static_cast<int64_t>(rowptr[i + 1]); ++e) {
        const int64_t j = col[e];
        const T a = ew ? ew[e] : T(1);
        if (my_gx) {
          const T c = sb ? sb[j * ss] * a : a;
          if (c != T(0)) {
            T* gxj = my_gx + (b * N + j) * d;
            for (int64_t k = 0; k < d; ++k) gxj[k] += c * gpi[k];
          }
        }
        if (gsb) {
          const T* xj = xb + j * xs;
          T dot = h;
          for (int64_t k = 0; k < d; ++k) dot += gpi[k] * xj[k];
          gsb[j * gss] += a * dot;
        }
      }
    }
  }
}

// Gradients of plain_forward: gx (B, N, d) or null (not wanted) and, with s, gs (B, N); both zeroed
// by the caller. wsum: the forward's W, (B, N) with s, inw (N,) without.
template <typename T, typename I, int D>
void plain_backward(int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col, const T* ew, const T* x,
                    const T* s, const T* wsum, const T* gp, const T* gw, T* gx, T* gs, int threads) {
  if (D > 0) d = D;
  if (!gx && gs) {  // the source weights' gradient only: packed records, one per thread
    std::vector<std::vector<T>> records(std::max(threads, 1));
    if (threads <= 1) {
      records[0] = pack(B, N, d, x, s);
      plain_backward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, packed(records[0], s, d), wsum, gp, gw, nullptr);
    } else {
#pragma omp parallel num_threads(threads)
      {
        const int parts = thread_count(), tid = thread_id();
#pragma omp single
        records.resize(parts);
        records[tid] = pack(B, N, d, x, s);
        const std::vector<int64_t> bounds = row_bounds(rowptr, N, parts);
        plain_backward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew,
                                     packed(records[tid], s, d), wsum, gp, gw, nullptr);
      }
    }
    unpack_gs(gs, records, B * N, d);
    return;
  }
  if (threads <= 1)
    return plain_backward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, separate(x, s, gs, d), wsum, gp, gw, gx);
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
      if (gx) bx[tid].assign(B * N * d, T(0));
      if (gs) bs[tid].assign(B * N, T(0));
    }
    const std::vector<int64_t> bounds = row_bounds(rowptr, N, parts);
    plain_backward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew,
                                 separate(x, s, gs ? (tid == 0 ? gs : bs[tid].data()) : nullptr, d), wsum, gp, gw,
                                 gx ? (tid == 0 ? gx : bx[tid].data()) : nullptr);
  }
  if (gx) reduce_buffers(gx, bx, B * N * d);
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

// (edge, dimension) entries whose kernels are evaluated together (kernel_sigmoids): a block of
// consecutive rows' edges, a long row split over blocks.
constexpr int64_t kBlock = 256;

template <typename T, typename I, int D>
void pair_backward_rows(int64_t lo, int64_t hi, int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col,
                        const T* ew, const Nodes<T> nodes, const Pair<T> pair, const T* gp, const T* gw, T* my_gx,
                        T* geps, int need, double* scalars) {
  if (D > 0) d = D;
  if (lo >= hi) return;
  const int64_t xs = nodes.xs, ss = nodes.ss, gss = nodes.gss;
  const bool scalar_eps = pair.eps == nullptr;
  const bool need_eps = need & 1, need_tau = need & 2, need_rho = need & 4, need_rep = need & 8;
  const T inv_tau = T(1) / pair.tau;
  double sum_eps = 0.0, sum_tau = 0.0, sum_rho = 0.0, sum_rep = 0.0;
  T gxi[kMaxDim] = {}, g_eps[kMaxDim] = {}, eps_i[kMaxDim] = {}, ratio_i[kMaxDim] = {};
  // per entry of a block: distance, the receiver's eps and ratio, the two sigmoids
  T dist[kBlock], eps_e[kBlock], ratio_e[kBlock], s1[kBlock], s2[kBlock];
  // the receiver's eps and ratio; false when a ratio is out of range (s2 then computed directly)
  const auto receiver = [&](int64_t b, int64_t i) {
    bool in_range = true;
    for (int64_t k = 0; k < d; ++k) {
      eps_i[k] = pair.eps_at(b, i, k);
      ratio_i[k] = pair.ratio(eps_i[k], inv_tau);
      const T z = (pair.rho - eps_i[k]) * inv_tau;
      if (pair.kind == 2 && (z > T(kExpRange) || z < T(-kExpRange))) in_range = false;
    }
    return in_range;
  };
  bool scalar_in_range = true;
  if (scalar_eps) scalar_in_range = receiver(0, 0);
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = nodes.x + b * N * xs;
    const T* sb = nodes.s ? nodes.s + b * N * ss : nullptr;
    T* gsb = nodes.gs ? nodes.gs + b * N * gss : nullptr;
    // (row, edge) where the next block starts; rows without edges are passed over in both passes
    int64_t row = lo, edge = rowptr[lo];
    while (row < hi) {
      // pass 1: the block's distances, then its sigmoids
      int64_t m = 0, r = row, e = edge;
      bool direct_s2 = !scalar_in_range;
      while (r < hi && m + d <= kBlock) {
        const int64_t row_end = rowptr[r + 1];
        if (e < row_end) {
          if (!scalar_eps && !receiver(b, r)) direct_s2 = true;
          const T* xi = xb + r * xs;
          for (; e < row_end && m + d <= kBlock; ++e) {
            const T* xj = xb + static_cast<int64_t>(col[e]) * xs;
            for (int64_t k = 0; k < d; ++k, ++m) {
              dist[m] = std::abs(xj[k] - xi[k]);
              eps_e[m] = eps_i[k];
              ratio_e[m] = ratio_i[k];
            }
          }
          if (e < row_end) break;  // the block is full inside this row
        }
        ++r;
        if (r < hi) e = rowptr[r];
      }
      kernel_sigmoids(m, dist, eps_e, ratio_e, inv_tau, pair.rho, s1, s2);
      if (direct_s2)
        for (int64_t t = 0; t < m; ++t) s2[t] = sigmoid((dist[t] - pair.rho) * inv_tau);
      // pass 2: the same edges, row by row; a row's sums carry over to the next block if it is split
      const int64_t block_row = r, block_edge = e;
      m = 0;
      for (; row < hi && (row < block_row || (row == block_row && edge < block_edge)); ) {
        const int64_t i = row;
        const int64_t row_start = rowptr[i], row_end = rowptr[i + 1];
        const int64_t stop = row == block_row ? block_edge : row_end;
        const T* xi = xb + i * xs;
        const T* gpi = gp + (b * N + i) * d;
        const T* gwi = gw ? gw + (b * N + i) * d : nullptr;
        if (edge == row_start) {
          for (int64_t k = 0; k < d; ++k) gxi[k] = g_eps[k] = T(0);
        }
        if (!scalar_eps && edge < stop)
          for (int64_t k = 0; k < d; ++k) eps_i[k] = pair.eps_at(b, i, k);
        for (; edge < stop; ++edge, m += d) {
          const int64_t j = col[edge];
          const T a = ew ? ew[edge] : T(1);
          const T c = sb ? sb[j * ss] * a : a;  // what multiplies the pair kernel
          const T* xj = xb + j * xs;
          if (c == T(0)) {
            // w = 0: only s_j's gradient, sum_k gp_ik (x_jk - x_ik) K_k a, is nonzero
            if (!gsb) continue;
            T g_source = T(0);
            for (int64_t k = 0; k < d; ++k) {
              const T diff = xj[k] - xi[k];
              g_source += (gpi[k] * diff) * pair.weight_from(s1[m + k], s2[m + k]) * a;
            }
            gsb[j * gss] += g_source;
            continue;
          }
          T g_source = T(0);
          for (int64_t k = 0; k < d; ++k) {
            const T diff = xj[k] - xi[k];
            T K, d_dist, d_eps, d_tau, d_rho, d_rep;
            pair.grad_from(s1[m + k], s2[m + k], dist[m + k], eps_i[k], inv_tau, K, d_dist, d_eps, d_tau, d_rho,
                           d_rep);
            const T w = K * c;
            const T g_w = gpi[k] * diff + (gwi ? gwi[k] * sign(w) : T(0));  // dL/dw
            const T g_k = g_w * c;                                          // dL/dK
            g_source += g_w * K * a;
            if (my_gx) {
              const T g_diff = gpi[k] * w + g_k * d_dist * sign(diff);
              my_gx[(b * N + j) * d + k] += g_diff;
              gxi[k] -= g_diff;
            }
            g_eps[k] += g_k * d_eps;
            if (need_tau) sum_tau += static_cast<double>(g_k * d_tau);
            if (need_rho) sum_rho += static_cast<double>(g_k * d_rho);
            if (need_rep) sum_rep += static_cast<double>(g_k * d_rep);
          }
          if (gsb) gsb[j * gss] += g_source;
        }
        if (edge < row_end) break;  // split: continued in the next block
        if (my_gx) {
          T* out = my_gx + (b * N + i) * d;
          for (int64_t k = 0; k < d; ++k) out[k] += gxi[k];
        }
        if (need_eps) {
          if (scalar_eps)
            for (int64_t k = 0; k < d; ++k) sum_eps += static_cast<double>(g_eps[k]);
          else
            for (int64_t k = 0; k < d; ++k) geps[b * pair.esb + i * pair.esn + k * pair.esd] += g_eps[k];
        }
        ++row;
        if (row < hi) edge = rowptr[row];
      }
    }
  }
  scalars[0] += sum_eps;
  scalars[1] += sum_tau;
  scalars[2] += sum_rho;
  scalars[3] += sum_rep;
}

// Gradients of pair_forward. gx zeroed (B, N, d) or null (not wanted); gs zeroed (B, N) or null;
// geps zeroed, laid out like eps (strides esb/esn/esd, per receiver) or null; scalars[0..3] += d eps
// (scalar eps), d tau, d rho, d rep, for the bits 1, 2, 4, 8 of `need`. With gs, edges with s_j = 0
// are visited too (their s_j gets a gradient).
template <typename T, typename I, int D>
void pair_backward(int64_t B, int64_t N, int64_t d, const I* rowptr, const I* col, const T* ew, const T* x,
                   const T* s, const Pair<T>& pair, const T* gp, const T* gw, T* gx, T* gs, T* geps, int need,
                   double* scalars, int threads) {
  if (D > 0) d = D;
  if (!gx && gs) {  // no gradient to x: packed records, one per thread
    std::vector<std::vector<T>> records(std::max(threads, 1));
    if (threads <= 1) {
      records[0] = pack(B, N, d, x, s);
      pair_backward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, packed(records[0], s, d), pair, gp, gw, nullptr,
                                  geps, need, scalars);
    } else {
      std::vector<std::vector<double>> bscalar;
#pragma omp parallel num_threads(threads)
      {
        const int parts = thread_count(), tid = thread_id();
#pragma omp single
        {
          records.resize(parts);
          bscalar.assign(parts, std::vector<double>(4, 0.0));
        }
        records[tid] = pack(B, N, d, x, s);
        const std::vector<int64_t> bounds = row_bounds(rowptr, N, parts);
        pair_backward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew,
                                    packed(records[tid], s, d), pair, gp, gw, nullptr, geps, need,
                                    bscalar[tid].data());
      }
      for (const auto& part : bscalar)
        for (int k = 0; k < 4; ++k) scalars[k] += part[k];
    }
    unpack_gs(gs, records, B * N, d);
    return;
  }
  if (threads <= 1)
    return pair_backward_rows<T, I, D>(0, N, B, N, d, rowptr, col, ew, separate(x, s, gs, d), pair, gp, gw, gx,
                                       geps, need, scalars);
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
      if (gx) bx[tid].assign(B * N * d, T(0));
      if (gs) bs[tid].assign(B * N, T(0));
    }
    const std::vector<int64_t> bounds = row_bounds(rowptr, N, parts);
    // geps is per receiver (rows are owned by one thread), so it needs no per-thread copy
    pair_backward_rows<T, I, D>(bounds[tid], bounds[tid + 1], B, N, d, rowptr, col, ew,
                                separate(x, s, gs ? (tid == 0 ? gs : bs[tid].data()) : nullptr, d), pair, gp, gw,
                                gx ? (tid == 0 ? gx : bx[tid].data()) : nullptr, geps, need, bscalar[tid].data());
  }
  if (gx) reduce_buffers(gx, bx, B * N * d);
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

// dL/ds of a pull without pair kernel gated by s, when x needs no gradient, from the followees'
// side (the transpose): gs_j = sum over j's out-edges e = (j -> i) of a_e (h_i + gp_i . x_j) with
// h_i = gw_i - gp_i . x_i, summed as sum_e a_e h_i + x_j . sum_e a_e gp_i. Each follower's
// [gp_i, h_i] is read from one record (a random read per edge instead of a random read-modify-write)
// and each gs_j written once, so rows split across threads need no reduction.
template <typename T, typename I, int D>
void plain_source_grad_rows(int64_t lo, int64_t hi, int64_t d, const int64_t* starts, const I* follower,
                            const I* edge, const T* ew, const T* xb, const T* records, T* gsb) {
  if (D > 0) d = D;
  T acc[kMaxDim];
  for (int64_t j = lo; j < hi; ++j) {
    T acc_h = T(0);
    for (int64_t k = 0; k < d; ++k) acc[k] = T(0);
    for (int64_t p = starts[j]; p < starts[j + 1]; ++p) {
      const T* r = records + static_cast<int64_t>(follower[p]) * (d + 1);
      const T a = ew ? ew[edge[p]] : T(1);
      for (int64_t k = 0; k < d; ++k) acc[k] += a * r[k];
      acc_h += a * r[d];
    }
    T total = acc_h;
    for (int64_t k = 0; k < d; ++k) total += acc[k] * xb[j * d + k];
    gsb[j] = total;
  }
}

template <typename T, typename I, int D>
void plain_source_grad(int64_t B, int64_t N, int64_t d, const int64_t* starts, const I* follower, const I* edge,
                       const T* ew, const T* x, const T* gp, const T* gw, T* gs, int threads) {
  if (D > 0) d = D;
  std::vector<T> records(N * (d + 1));
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * N * d;
    for (int64_t i = 0; i < N; ++i) {
      const T* gpi = gp + (b * N + i) * d;
      T* r = records.data() + i * (d + 1);
      T h = gw ? gw[b * N + i] : T(0);
      for (int64_t k = 0; k < d; ++k) {
        r[k] = gpi[k];
        h -= gpi[k] * xb[i * d + k];
      }
      r[d] = h;
    }
    T* gsb = gs + b * N;
    if (threads <= 1) {
      plain_source_grad_rows<T, I, D>(0, N, d, starts, follower, edge, ew, xb, records.data(), gsb);
      continue;
    }
#pragma omp parallel num_threads(threads)
    {
      const std::vector<int64_t> bounds = row_bounds(starts, N, thread_count());
      const int tid = thread_id();
      plain_source_grad_rows<T, I, D>(bounds[tid], bounds[tid + 1], d, starts, follower, edge, ew, xb,
                                      records.data(), gsb);
    }
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

// ------------------------------------------------------------------ emotion update, backward
// The gradients of lpm.dynamics.emotion's second-order update in one pass over (B, N, d):
//   f = a P / (1 + W) - decay (e - base) + gain shock (+ drive),  a = coupling s_i,
//   v' = momentum v + dt f,  e' = e + v'.
// ge, gv: dL/de', dL/dv'. Writes gP (B, N, d), gW (B, N, 1), and where not null gf (dL/df, the
// drive's gradient), gE, gV (the gradients of e and v); adds to sums[0..3] the gradients of
// coupling, decay, momentum and gain. s: (B or 1, N) with batch stride s_b; shock: (N, d) with
// stride shock_n (0 for one (d,) impulse) or null; base: (d,) or null.
template <typename T>
void emotion_backward(int64_t B, int64_t N, int64_t d, double dt, double coupling, double decay, double momentum,
                      const T* e, const T* v, const T* P, const T* W, const T* s, int64_t s_b, const T* base,
                      const T* shock, int64_t shock_n, const T* ge, const T* gv, T* gP, T* gW, T* gf, T* gE, T* gV,
                      double* sums) {
  const T c_coupling = static_cast<T>(coupling), c_decay = static_cast<T>(decay);
  const T c_momentum = static_cast<T>(momentum), c_dt = static_cast<T>(dt);
  double sum_coupling = 0.0, sum_decay = 0.0, sum_momentum = 0.0, sum_gain = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < N; ++i) {
      const int64_t n = b * N + i;
      const T si = s[b * s_b + i];
      const T a = c_coupling * si;
      const T c = T(1) + W[n];
      T g_w = T(0), g_coupling = T(0);
      for (int64_t k = 0; k < d; ++k) {
        const int64_t at = n * d + k;
        const T g_vel = gv[at] + ge[at];  // v' also feeds e' = e + v'
        const T g_f = c_dt * g_vel;
        sum_momentum += static_cast<double>(g_vel * v[at]);
        if (gV) gV[at] = c_momentum * g_vel;
        const T rel = base ? e[at] - base[k] : e[at];
        sum_decay -= static_cast<double>(g_f * rel);
        if (shock) sum_gain += static_cast<double>(g_f * shock[i * shock_n + k]);
        if (gf) gf[at] = g_f;
        if (gE) gE[at] = ge[at] - c_decay * g_f;
        const T q = g_f / c;
        gP[at] = q * a;
        g_w -= q * a * P[at] / c;
        g_coupling += q * P[at] * si;
      }
      gW[n] = g_w;
      sum_coupling += static_cast<double>(g_coupling);
    }
  }
  sums[0] += sum_coupling;
  sums[1] += sum_decay;
  sums[2] += sum_momentum;
  sums[3] += sum_gain;
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

int lpm_plain_source_grad(int dtype, int index, int64_t B, int64_t N, int64_t d, const int64_t* starts,
                          const void* follower, const void* edge, const void* ew, const void* x, const void* gp,
                          const void* gw, void* gs, int threads) {
  LPM_DISPATCH_D(dtype, index, d,
                 plain_source_grad<T, I, D>(B, N, d, starts, (const I*)follower, (const I*)edge, (const T*)ew,
                                            (const T*)x, (const T*)gp, (const T*)gw, (T*)gs, threads));
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

int lpm_emotion_backward(int dtype, int64_t B, int64_t N, int64_t d, double dt, double coupling, double decay,
                         double momentum, const void* e, const void* v, const void* P, const void* W, const void* s,
                         int64_t s_b, const void* base, const void* shock, int64_t shock_n, const void* ge,
                         const void* gv, void* gP, void* gW, void* gf, void* gE, void* gV, double* sums) {
#define LPM_EMOTION(T)                                                                                       \
  emotion_backward<T>(B, N, d, dt, coupling, decay, momentum, (const T*)e, (const T*)v, (const T*)P, (const T*)W, \
                      (const T*)s, s_b, (const T*)base, (const T*)shock, shock_n, (const T*)ge, (const T*)gv,      \
                      (T*)gP, (T*)gW, (T*)gf, (T*)gE, (T*)gV, sums)
  if (dtype == 0) LPM_EMOTION(float);
  else if (dtype == 1) LPM_EMOTION(double);
  else return -1;
#undef LPM_EMOTION
  return 0;
}

}  // extern "C"

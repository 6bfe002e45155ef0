// A stack of MLP members trained a whole epoch per call, one member per SIMD lane.
//
// Storage is block-major: block b holds LANES members, every parameter (and optimizer state
// entry) of a block is one vector of LANES values, (blocks, P, LANES). Every operation on member
// data is a lane-wise vector operation (GCC vector extensions) with no cross-lane reduction and
// no scalar tail, and exp/log/tanh are written here rather than taken from libm (whose vector and
// scalar versions differ in the last bit), so a member's arithmetic is the same in every lane of
// every block: its numbers do not depend on how many members share the stack or where it sits.
// Stopped members keep their lanes; their updates are masked, so their values stay exactly put.
//
// Plain C ABI (loaded with ctypes): no torch headers, so the first build takes seconds.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int VBYTES = 32;

template <typename T> struct Bits;
template <> struct Bits<float> {
  typedef int32_t S;
  static constexpr int MANT = 23, BIAS = 127;
  static constexpr double MAGIC = 12582912.0;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr double HI = 88.72, LO = -103.0;
};
template <> struct Bits<double> {
  typedef int64_t S;
  static constexpr int MANT = 52, BIAS = 1023;
  static constexpr double MAGIC = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double HI = 709.78, LO = -745.2;
};

template <typename T> struct Vt {
  static constexpr int W = VBYTES / sizeof(T);
  typedef T V __attribute__((vector_size(VBYTES)));
  typedef typename Bits<T>::S S;
  typedef S I __attribute__((vector_size(VBYTES)));
};

template <typename V> inline V splat(double a) {
  V v;
  for (unsigned l = 0; l < sizeof(V) / sizeof(v[0]); ++l) v[l] = (decltype(+v[0]))a;
  return v;
}

template <typename T> using V_ = typename Vt<T>::V;
template <typename T> using I_ = typename Vt<T>::I;

template <typename T> inline I_<T> bits(V_<T> v) { I_<T> i; std::memcpy(&i, &v, sizeof v); return i; }
template <typename T> inline V_<T> from_bits(I_<T> i) { V_<T> v; std::memcpy(&v, &i, sizeof v); return v; }

template <typename T> inline V_<T> vsqrt(V_<T> v) {
  for (int l = 0; l < Vt<T>::W; ++l) v[l] = std::sqrt(v[l]);  // IEEE exact: the same bits either way
  return v;
}

// Polynomial of exp(r) (first: exp(r) - 1 when minus_one) for |r| <= ln2 / 2: Taylor to 1e-17 / 5e-9.
template <typename T> inline V_<T> exp_poly(V_<T> r, bool minus_one) {
  typedef V_<T> V;
  const int deg = sizeof(T) == 8 ? 13 : 7;
  double c = 1.0;
  for (int k = 2; k <= deg; ++k) c /= k;  // 1 / deg!
  V p = splat<V>(c);
  for (int k = deg - 1; k >= 1; --k) {
    c *= (k + 1);
    p = p * r + splat<V>(c);
  }
  p = p * r;  // exp(r) - 1
  return minus_one ? p : p + splat<V>(1.0);
}

// exp(x) - 1 (minus_one) or exp(x): x = k ln2 + r, |r| <= ln2 / 2, then 2^k (p(r) + 1) - 1 with
// p(r) = exp(r) - 1 from its polynomial; at k = 0 that is p(r) itself, without cancellation.
template <typename T> inline V_<T> vexp_(V_<T> x, bool minus_one) {
  typedef V_<T> V;
  typedef I_<T> I;
  const V hi = splat<V>(Bits<T>::HI), lo = splat<V>(Bits<T>::LO);
  V xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  const V magic = splat<V>(Bits<T>::MAGIC);
  V t = xc * splat<V>(1.4426950408889634) + magic;
  V k = t - magic;
  const double ln2_hi = sizeof(T) == 8 ? 0.6931471803691238 : 0.693145751953125;
  const double ln2_lo = sizeof(T) == 8 ? 1.9082149292705877e-10 : 1.428606765330187e-06;
  V r = xc - k * splat<V>(ln2_hi) - k * splat<V>(ln2_lo);
  V p = exp_poly<T>(r, true);
  I ki = bits<T>(t) - bits<T>(magic);  // k as an integer
  I k1 = ki >> 1, k2 = ki - k1;        // 2^k as two factors: no overflow at either end of the range
  V s1 = from_bits<T>((k1 + Bits<T>::BIAS) << Bits<T>::MANT);
  V s2 = from_bits<T>((k2 + Bits<T>::BIAS) << Bits<T>::MANT);
  V y;
  if (minus_one) {
    V s = s1 * s2;  // |x| small enough here for 2^k to be normal
    y = s * p + (s - splat<V>(1.0));
    y = x < lo ? splat<V>(-1.0) : y;
  } else {
    y = (p + splat<V>(1.0)) * s1 * s2;
    y = x < lo ? splat<V>(0.0) : y;
  }
  y = x > hi ? splat<V>(INFINITY) : y;
  return x != x ? x : y;
}

template <typename T> inline V_<T> vexp(V_<T> x) { return vexp_<T>(x, false); }

template <typename T> inline V_<T> vtanh(V_<T> x) {
  typedef V_<T> V;
  typedef I_<T> I;
  const I sign = bits<T>(splat<V>(-0.0));
  V a = from_bits<T>(bits<T>(x) & ~sign);
  const V far = splat<V>(sizeof(T) == 8 ? -40.0 : -20.0);  // beyond, tanh is 1 to the last bit
  V y = splat<V>(-2.0) * a;
  V e = vexp_<T>(y < far ? far : y, true);  // expm1(-2|x|)
  V th = -e / (splat<V>(2.0) + e);
  return from_bits<T>(bits<T>(th) | (bits<T>(x) & sign));
}

template <typename T> inline V_<T> vsigmoid(V_<T> x) {
  typedef V_<T> V;
  return splat<V>(1.0) / (splat<V>(1.0) + vexp<T>(-x));
}

// log(s) for s >= 1 (a softmax normaliser): s = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh f.
template <typename T> inline V_<T> vlog(V_<T> s) {
  typedef V_<T> V;
  typedef I_<T> I;
  typedef typename Vt<T>::S S;
  const S mant = (S(1) << Bits<T>::MANT) - 1;
  I b = bits<T>(s);
  I e = ((b >> Bits<T>::MANT) & S(2 * Bits<T>::BIAS + 1)) - Bits<T>::BIAS;
  V m = from_bits<T>((b & mant) | bits<T>(splat<V>(1.0)));
  I big = m > splat<V>(1.4142135623730951);
  m = big ? m * splat<V>(0.5) : m;
  e = e - big;  // big is -1 where true
  V f = (m - splat<V>(1.0)) / (m + splat<V>(1.0));
  V f2 = f * f;
  const int terms = sizeof(T) == 8 ? 11 : 5;
  V p = splat<V>(1.0 / (2 * terms + 1));
  for (int k = terms - 1; k >= 0; --k) p = p * f2 + splat<V>(1.0 / (2 * k + 1));
  V ef;
  for (int l = 0; l < Vt<T>::W; ++l) ef[l] = (T)e[l];
  const double ln2_hi = sizeof(T) == 8 ? 0.6931471803691238 : 0.693145751953125;
  const double ln2_lo = sizeof(T) == 8 ? 1.9082149292705877e-10 : 1.428606765330187e-06;
  V y = ef * splat<V>(ln2_hi) + (splat<V>(2.0) * f * p + ef * splat<V>(ln2_lo));
  return s < splat<V>(INFINITY) ? y : s;  // inf and NaN pass through
}

enum Act { IDENTITY = 0, TANH = 1, RELU = 2, SIGMOID = 3 };
enum Rule { DELTA = 0, MOMENTUM = 1, NESTEROV = 2, ADAGRAD = 3, RMSPROP = 4, ADAM = 5 };
enum Hyper { LR = 0, MU, BETA1, BETA2, EPS, ALPHA, N_HYPER };

template <typename T> inline V_<T> act_forward(int act, V_<T> z) {
  typedef V_<T> V;
  switch (act) {
    case TANH: return vtanh<T>(z);
    case RELU: return z > V{} ? z : V{};
    case SIGMOID: return vsigmoid<T>(z);
    default: return z;
  }
}

// gradient through the activation from its output y, as autograd computes it
template <typename T> inline V_<T> act_backward(int act, V_<T> g, V_<T> y) {
  typedef V_<T> V;
  switch (act) {
    case TANH: return g * (splat<V>(1.0) - y * y);
    case RELU: return y > V{} ? g : V{};
    case SIGMOID: return g * ((splat<V>(1.0) - y) * y);
    default: return g;
  }
}

struct Net {
  int n_layers;
  const int32_t* dims;    // n_layers + 1 widths
  const int64_t* weight;  // offset of each layer's weight in a member's parameters
  const int64_t* bias;    // offset of its bias, -1 if none
  const int32_t* acts;    // n_layers * MAX_ACTS activations after each Linear, IDENTITY-padded
  int max_acts;
  int64_t P;
};

template <typename T> struct Hyp {
  typedef V_<T> V;
  V lr, mu, b1, b2, eps, alpha, omb1, omb2, oma, step_size, inv_bc2s;
  I_<T> on;  // -1 where the member trains
};

template <typename T, int R> inline void update(T* p_, T* s0_, T* s1_, V_<T> g, const Hyp<T>& h) {
  typedef V_<T> V;
  V p = *(V*)p_, np, s0 = R == DELTA ? V{} : *(V*)s0_, ns0 = s0;
  if (R == DELTA) {
    np = p - h.lr * g;
  } else if (R == MOMENTUM || R == NESTEROV) {
    ns0 = h.mu * s0 + g;
    np = R == MOMENTUM ? p - h.lr * ns0 : p - h.lr * (g + h.mu * ns0);
  } else if (R == ADAGRAD) {
    ns0 = s0 + g * g;
    np = p - h.lr * (g / (vsqrt<T>(ns0) + h.eps));
  } else if (R == RMSPROP) {
    ns0 = h.alpha * s0 + h.oma * (g * g);
    np = p - h.lr * (g / (vsqrt<T>(ns0) + h.eps));
  } else {  // ADAM
    V s1 = *(V*)s1_;
    ns0 = s0 + h.omb1 * (g - s0);  // m.lerp_(g, 1 - beta1)
    V ns1 = h.b2 * s1 + h.omb2 * (g * g);
    np = p - h.step_size * (ns0 / (vsqrt<T>(ns1) * h.inv_bc2s + h.eps));  // one division, not torch's two
    *(V*)s1_ = h.on ? ns1 : s1;
  }
  *(V*)p_ = h.on ? np : p;
  if (R != DELTA) *(V*)s0_ = h.on ? ns0 : s0;
}

template <typename T> struct Block {
  typedef V_<T> V;
  const Net& net;
  int B;  // batch size
  std::vector<std::vector<std::vector<V>>> vals;  // per layer: (1 + max_acts) buffers of B * width, [0] the Linear's output
  std::vector<V> xin, d, dprev;
  Block(const Net& n, int B_, int n_in) : net(n), B(B_) {
    xin.resize((size_t)B * n_in);
    int widest = n_in;
    vals.resize(n.n_layers);
    for (int L = 0; L < n.n_layers; ++L) {
      vals[L].assign(1 + n.max_acts, std::vector<V>((size_t)B * n.dims[L + 1]));
      widest = widest > n.dims[L + 1] ? widest : n.dims[L + 1];
    }
    d.resize((size_t)B * widest);
    dprev.resize((size_t)B * widest);
  }
  const V* output(int L) const { return L < 0 ? xin.data() : last(L).data(); }
  const std::vector<V>& last(int L) const {
    int k = 0;
    while (k < net.max_acts && net.acts[L * net.max_acts + k] != IDENTITY) ++k;
    return vals[L][k];
  }

  void forward(const T* p, int nb) {
    for (int L = 0; L < net.n_layers; ++L) {
      const int ni = net.dims[L], no = net.dims[L + 1];
      const V* a = output(L - 1);
      const V* Wt = (const V*)(p) + net.weight[L];
      const V* bt = net.bias[L] >= 0 ? (const V*)(p) + net.bias[L] : nullptr;
      V* z = vals[L][0].data();
      linear(Wt, bt, a, z, ni, no, nb);
      for (int k = 0; k < net.max_acts; ++k) {
        int act = net.acts[L * net.max_acts + k];
        if (act == IDENTITY) break;
        const V* src = vals[L][k].data();
        V* dst = vals[L][k + 1].data();
        for (int j = 0; j < nb * no; ++j) dst[j] = act_forward<T>(act, src[j]);
      }
    }
  }

  // z[b] = W a[b] + bias for every sample: four outputs at a time (four independent sums, each in
  // input order), the samples inside so that those four rows of W stay in cache
  static void linear(const V* Wt, const V* bt, const V* a, V* z, int ni, int no, int nb) {
    int o = 0;
    for (; o + 4 <= no; o += 4) {
      const V *w0 = Wt + (size_t)o * ni, *w1 = w0 + ni, *w2 = w1 + ni, *w3 = w2 + ni;
      int b = 0;
      for (; b + 4 <= nb; b += 4) {  // four samples too: a 4 x 4 tile of sums in registers
        V acc[4][4];
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) acc[r][c] = bt ? bt[o + r] : V{};
        const V* ab = a + (size_t)b * ni;
        for (int i = 0; i < ni; ++i) {
          const V w[4] = {w0[i], w1[i], w2[i], w3[i]};
          for (int c = 0; c < 4; ++c) {
            const V x = ab[(size_t)c * ni + i];
            for (int r = 0; r < 4; ++r) acc[r][c] += w[r] * x;
          }
        }
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) z[(size_t)(b + c) * no + o + r] = acc[r][c];
      }
      for (; b < nb; ++b) {
        V s0 = bt ? bt[o] : V{}, s1 = bt ? bt[o + 1] : V{}, s2 = bt ? bt[o + 2] : V{}, s3 = bt ? bt[o + 3] : V{};
        const V* ab = a + (size_t)b * ni;
        for (int i = 0; i < ni; ++i) {
          V x = ab[i];
          s0 += w0[i] * x; s1 += w1[i] * x; s2 += w2[i] * x; s3 += w3[i] * x;
        }
        V* zb = z + (size_t)b * no;
        zb[o] = s0; zb[o + 1] = s1; zb[o + 2] = s2; zb[o + 3] = s3;
      }
    }
    for (; o < no; ++o) {
      const V* w = Wt + (size_t)o * ni;
      for (int b = 0; b < nb; ++b) {
        V s = bt ? bt[o] : V{};
        const V* ab = a + (size_t)b * ni;
        for (int i = 0; i < ni; ++i) s += w[i] * ab[i];
        z[(size_t)b * no + o] = s;
      }
    }
  }

  // d (B x width of the top layer) from the loss; returns the step's loss per lane
  V loss_grad(int loss, int nb, const int64_t* labels, const T* targets) {
    const int C = net.dims[net.n_layers];
    const V* z = output(net.n_layers - 1);
    V total{};
    const V inv = splat<V>(1.0 / nb);
    for (int b = 0; b < nb; ++b) {
      const V* zb = z + (size_t)b * C;
      V* db = d.data() + (size_t)b * C;
      if (loss == 0) {  // cross-entropy on logits: d = (softmax - onehot) / B
        V mx = zb[0];
        for (int c = 1; c < C; ++c) mx = zb[c] > mx ? zb[c] : mx;
        V s{}, zy{};
        for (int c = 0; c < C; ++c) s += (db[c] = vexp<T>(zb[c] - mx));
        for (int c = 0; c < C; ++c) {
          I_<T> hit;
          for (int l = 0; l < Vt<T>::W; ++l) hit[l] = labels[(size_t)b * Vt<T>::W + l] == c ? -1 : 0;
          zy = hit ? zb[c] : zy;
          V sm = db[c] / s;
          db[c] = nb == 1 ? (hit ? sm - splat<V>(1.0) : sm) : (hit ? sm * inv - inv : sm * inv);
        }
        total += -((zy - mx) - vlog<T>(s));
      } else {  // squared error: d = 2 (z - t) / (B C)
        const V scale = splat<V>(2.0 / ((double)nb * C));
        for (int c = 0; c < C; ++c) {
          V t;
          for (int l = 0; l < Vt<T>::W; ++l) t[l] = targets[((size_t)b * C + c) * Vt<T>::W + l];
          V r = zb[c] - t;
          total += r * r;
          db[c] = r * scale;
        }
      }
    }
    return loss == 0 ? (nb == 1 ? total : total / splat<V>(nb)) : total / splat<V>((double)nb * C);
  }

  // backward through every layer, each Linear's parameters updated once its input gradient is out;
  // returns the squared gradient norm per lane
  template <int R> V backward_update(T* p, T* s0, T* s1, const Hyp<T>& h, int nb, bool norm) {
    V sq{};
    for (int L = net.n_layers - 1; L >= 0; --L) {
      const int ni = net.dims[L], no = net.dims[L + 1];
      // through this layer's activations, top down: d is the gradient w.r.t. the top value
      for (int k = net.max_acts - 1; k >= 0; --k) {
        int act = net.acts[L * net.max_acts + k];
        if (act == IDENTITY) continue;
        const V* y = vals[L][k + 1].data();
        for (int j = 0; j < nb * no; ++j) d[j] = act_backward<T>(act, d[j], y[j]);
      }
      const V* a = output(L - 1);
      V* Wp = (V*)p + net.weight[L];
      V* S0 = (V*)s0 + net.weight[L];
      V* S1 = (V*)s1 + net.weight[L];
      if (nb == 1)
        sq += weights_one<R>(Wp, S0, S1, a, h, ni, no, L > 0, norm);
      else
        sq += weights_batch<R>(Wp, S0, S1, a, h, ni, no, nb, L > 0, norm);
      if (net.bias[L] >= 0) {
        const int64_t at = net.bias[L];
        for (int o = 0; o < no; ++o) {
          V g = d[o];
          for (int b = 1; b < nb; ++b) g += d[(size_t)b * no + o];
          if (norm) sq += g * g;
          update<T, R>((T*)((V*)p + at + o), (T*)((V*)s0 + at + o), (T*)((V*)s1 + at + o), g, h);
        }
      }
      if (L > 0) std::copy(dprev.begin(), dprev.begin() + (size_t)nb * ni, d.begin());
    }
    return sq;
  }

  // one sample: four inputs at a time, their input gradients summed over the outputs in registers
  template <int R> V weights_one(V* Wp, V* S0, V* S1, const V* a, const Hyp<T>& h, int ni, int no, bool down,
                                 bool norm) {
    V sq{};
    int i = 0;
    for (; i + 4 <= ni; i += 4) {
      V acc0{}, acc1{}, acc2{}, acc3{};
      const V a0 = a[i], a1 = a[i + 1], a2 = a[i + 2], a3 = a[i + 3];
      for (int o = 0; o < no; ++o) {
        const V dv = d[o];
        const size_t at = (size_t)o * ni + i;
        V* w = Wp + at;
        acc0 += w[0] * dv; acc1 += w[1] * dv; acc2 += w[2] * dv; acc3 += w[3] * dv;
        V g0 = dv * a0, g1 = dv * a1, g2 = dv * a2, g3 = dv * a3;
        if (norm) sq += g0 * g0 + g1 * g1 + g2 * g2 + g3 * g3;
        update<T, R>((T*)w, (T*)(S0 + at), (T*)(S1 + at), g0, h);
        update<T, R>((T*)(w + 1), (T*)(S0 + at + 1), (T*)(S1 + at + 1), g1, h);
        update<T, R>((T*)(w + 2), (T*)(S0 + at + 2), (T*)(S1 + at + 2), g2, h);
        update<T, R>((T*)(w + 3), (T*)(S0 + at + 3), (T*)(S1 + at + 3), g3, h);
      }
      if (down) { dprev[i] = acc0; dprev[i + 1] = acc1; dprev[i + 2] = acc2; dprev[i + 3] = acc3; }
    }
    for (; i < ni; ++i) {
      V acc{};
      const V ai = a[i];
      for (int o = 0; o < no; ++o) {
        const V dv = d[o];
        const size_t at = (size_t)o * ni + i;
        acc += Wp[at] * dv;
        V g = dv * ai;
        if (norm) sq += g * g;
        update<T, R>((T*)(Wp + at), (T*)(S0 + at), (T*)(S1 + at), g, h);
      }
      if (down) dprev[i] = acc;
    }
    return sq;
  }

  // several samples: first the input gradients (old weights), then each weight's gradient summed over
  // the batch in registers, four inputs at a time, and its update
  template <int R> V weights_batch(V* Wp, V* S0, V* S1, const V* a, const Hyp<T>& h, int ni, int no, int nb,
                                   bool down, bool norm) {
    if (down) input_grads(Wp, ni, no, nb);
    V sq{};
    int o = 0;
    for (; o + 4 <= no; o += 4) {  // a 4 x 4 tile of weights: each sample's values read once per tile
      int i = 0;
      for (; i + 4 <= ni; i += 4) {
        V g[4][4] = {};
        for (int b = 0; b < nb; ++b) {
          const V* db = d.data() + (size_t)b * no + o;
          const V* ab = a + (size_t)b * ni + i;
          for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 4; ++c) g[r][c] += db[r] * ab[c];
        }
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) {
            if (norm) sq += g[r][c] * g[r][c];
            const size_t at = (size_t)(o + r) * ni + i + c;
            update<T, R>((T*)(Wp + at), (T*)(S0 + at), (T*)(S1 + at), g[r][c], h);
          }
      }
      for (; i < ni; ++i)
        for (int r = 0; r < 4; ++r) sq += weight_column<R>(Wp, S0, S1, a, h, ni, no, nb, o + r, i, norm);
    }
    for (; o < no; ++o) {
      int i = 0;
      for (; i + 4 <= ni; i += 4) {
        V g0{}, g1{}, g2{}, g3{};
        for (int b = 0; b < nb; ++b) {
          const V dv = d[(size_t)b * no + o];
          const V* ab = a + (size_t)b * ni + i;
          g0 += dv * ab[0]; g1 += dv * ab[1]; g2 += dv * ab[2]; g3 += dv * ab[3];
        }
        if (norm) sq += g0 * g0 + g1 * g1 + g2 * g2 + g3 * g3;
        const size_t at = (size_t)o * ni + i;
        update<T, R>((T*)(Wp + at), (T*)(S0 + at), (T*)(S1 + at), g0, h);
        update<T, R>((T*)(Wp + at + 1), (T*)(S0 + at + 1), (T*)(S1 + at + 1), g1, h);
        update<T, R>((T*)(Wp + at + 2), (T*)(S0 + at + 2), (T*)(S1 + at + 2), g2, h);
        update<T, R>((T*)(Wp + at + 3), (T*)(S0 + at + 3), (T*)(S1 + at + 3), g3, h);
      }
      for (; i < ni; ++i) sq += weight_column<R>(Wp, S0, S1, a, h, ni, no, nb, o, i, norm);
    }
    return sq;
  }

  template <int R> V weight_column(V* Wp, V* S0, V* S1, const V* a, const Hyp<T>& h, int ni, int no, int nb,
                                   int o, int i, bool norm) {
    V g{};
    for (int b = 0; b < nb; ++b) g += d[(size_t)b * no + o] * a[(size_t)b * ni + i];
    const size_t at = (size_t)o * ni + i;
    update<T, R>((T*)(Wp + at), (T*)(S0 + at), (T*)(S1 + at), g, h);
    return norm ? g * g : V{};
  }

  // dprev[b][i] = sum over o of W[o][i] d[b][o]: four inputs at a time, so that a block of W's
  // columns stays in cache across the batch
  void input_grads(const V* Wp, int ni, int no, int nb) {
    int i = 0;
    for (; i + 4 <= ni; i += 4) {
      int b = 0;
      for (; b + 4 <= nb; b += 4) {  // four samples too: a 4 x 4 tile of sums in registers
        V acc[4][4] = {};
        for (int o = 0; o < no; ++o) {
          const V* wr = Wp + (size_t)o * ni + i;
          const V w[4] = {wr[0], wr[1], wr[2], wr[3]};
          for (int c = 0; c < 4; ++c) {
            const V dv = d[(size_t)(b + c) * no + o];
            for (int r = 0; r < 4; ++r) acc[r][c] += w[r] * dv;
          }
        }
        for (int c = 0; c < 4; ++c)
          for (int r = 0; r < 4; ++r) dprev[(size_t)(b + c) * ni + i + r] = acc[r][c];
      }
      for (; b < nb; ++b) {
        V acc0{}, acc1{}, acc2{}, acc3{};
        const V* db = d.data() + (size_t)b * no;
        for (int o = 0; o < no; ++o) {
          const V* w = Wp + (size_t)o * ni + i;
          const V dv = db[o];
          acc0 += w[0] * dv; acc1 += w[1] * dv; acc2 += w[2] * dv; acc3 += w[3] * dv;
        }
        V* dp = dprev.data() + (size_t)b * ni + i;
        dp[0] = acc0; dp[1] = acc1; dp[2] = acc2; dp[3] = acc3;
      }
    }
    for (; i < ni; ++i)
      for (int b = 0; b < nb; ++b) {
        V acc{};
        for (int o = 0; o < no; ++o) acc += Wp[(size_t)o * ni + i] * d[(size_t)b * no + o];
        dprev[(size_t)b * ni + i] = acc;
      }
  }
};

// Adam's bias corrections per member for the next step, in double as torch.optim.Adam computes them;
// powers[0 .. W) and [W .. 2W) hold beta1^t and beta2^t, advanced for members that train.
template <typename T> void step_hyper(Hyp<T>& h, const double* hyper, double* powers, const uint8_t* on) {
  typedef V_<T> V;
  const int W = Vt<T>::W;
  V ss, inv;
  for (int l = 0; l < W; ++l) {
    if (on[l]) {
      powers[l] *= hyper[BETA1 * W + l];
      powers[W + l] *= hyper[BETA2 * W + l];
    }
    const double bc1 = 1.0 - powers[l], bc2 = 1.0 - powers[W + l];
    ss[l] = (T)(hyper[LR * W + l] / (bc1 > 0 ? bc1 : 1.0));
    inv[l] = (T)(1.0 / std::sqrt(bc2 > 0 ? bc2 : 1.0));
  }
  h.step_size = ss;
  h.inv_bc2s = inv;
}

template <typename T> Hyp<T> block_hyper(const double* hyper, const uint8_t* on) {
  typedef V_<T> V;
  const int W = Vt<T>::W;
  Hyp<T> h;
  V* dst[] = {&h.lr, &h.mu, &h.b1, &h.b2, &h.eps, &h.alpha};
  for (int k = 0; k < N_HYPER; ++k)
    for (int l = 0; l < W; ++l) (*dst[k])[l] = (T)hyper[k * W + l];
  for (int l = 0; l < W; ++l) {
    h.omb1[l] = (T)(1.0 - hyper[BETA1 * W + l]);
    h.omb2[l] = (T)(1.0 - hyper[BETA2 * W + l]);
    h.oma[l] = (T)(1.0 - hyper[ALPHA * W + l]);
    h.on[l] = on[l] ? -1 : 0;
  }
  h.step_size = h.lr;
  h.inv_bc2s = splat<V>(1.0);
  return h;
}

struct Data {
  const void* x;
  const int64_t* labels;
  const void* targets;
  const int64_t* order;  // (lanes in all, n) each member's sample order
  int64_t n, n_in;
  int loss, batch;
};

template <typename T, int R>
void epoch_block(const Net& net, const Data& data, int64_t blk, T* p, T* s0, T* s1, double* steps,
                 const double* hyper, const uint8_t* on, double* mean, T* trace_loss, T* trace_norm,
                 int64_t lanes_total) {
  typedef V_<T> V;
  const int W = Vt<T>::W;
  const int C = net.dims[net.n_layers];
  Block<T> blkbuf(net, data.batch, (int)data.n_in);
  Hyp<T> h = block_hyper<T>(hyper, on);
  std::vector<int64_t> labels((size_t)data.batch * W);
  std::vector<T> targets((size_t)data.batch * C * W);
  const T* x = (const T*)data.x;
  const int64_t* order = data.order + blk * W * data.n;
  double total[64] = {0};
  const bool tracing = trace_loss != nullptr;
  int64_t step = 0;
  for (int64_t s0i = 0; s0i < data.n; s0i += data.batch, ++step) {
    const int nb = (int)((s0i + data.batch <= data.n) ? data.batch : data.n - s0i);
    for (int b = 0; b < nb; ++b) {
      for (int l = 0; l < W; ++l) {
        const int64_t row = order[l * data.n + s0i + b];
        const T* xr = x + row * data.n_in;
        T* dst = (T*)(blkbuf.xin.data() + (size_t)b * data.n_in) + l;
        for (int64_t f = 0; f < data.n_in; ++f) dst[f * W] = xr[f];
        if (data.loss == 0) labels[(size_t)b * W + l] = data.labels[row];
        else
          for (int c = 0; c < C; ++c) targets[((size_t)b * C + c) * W + l] = ((const T*)data.targets)[row * C + c];
      }
    }
    blkbuf.forward(p, nb);
    V loss = blkbuf.loss_grad(data.loss, nb, labels.data(), targets.data());
    if (R == ADAM) step_hyper<T>(h, hyper, steps, on);
    V sq = blkbuf.template backward_update<R>(p, s0, s1, h, nb, tracing);
    for (int l = 0; l < W; ++l) total[l] += (double)loss[l] * nb;
    if (tracing) {
      V nrm = vsqrt<T>(sq);
      for (int l = 0; l < W; ++l) {
        trace_loss[step * lanes_total + blk * W + l] = loss[l];
        trace_norm[step * lanes_total + blk * W + l] = nrm[l];
      }
    }
  }
  for (int l = 0; l < W; ++l) mean[blk * W + l] = total[l] / data.n;
}

template <typename T>
void epoch_all(const Net& net, const Data& data, int64_t blocks, const int32_t* rules, T* p, T* s0, T* s1,
               double* steps, const double* hyper, const uint8_t* on, double* mean, T* tl, T* tn) {
  const int W = Vt<T>::W;
  const int64_t P = net.P, lanes = blocks * W;
  typedef void (*Fn)(const Net&, const Data&, int64_t, T*, T*, T*, double*, const double*, const uint8_t*,
                     double*, T*, T*, int64_t);
  static const Fn by_rule[] = {epoch_block<T, DELTA>, epoch_block<T, MOMENTUM>, epoch_block<T, NESTEROV>,
                               epoch_block<T, ADAGRAD>, epoch_block<T, RMSPROP>, epoch_block<T, ADAM>};
  for (int64_t b = 0; b < blocks; ++b) {
    bool any = false;
    for (int l = 0; l < W; ++l) any |= on[b * W + l] != 0;
    if (!any) continue;  // every member of the block has stopped
    by_rule[rules[b]](net, data, b, p + b * P * W, s0 + b * P * W, s1 + b * P * W, steps + b * 2 * W,
                      hyper + b * N_HYPER * W, on + b * W, mean, tl, tn, lanes);
  }
}

template <typename T>
void predict_all(const Net& net, int64_t blocks, const T* p, const T* x, int64_t n, int64_t n_in, T* out) {
  const int W = Vt<T>::W;
  const int C = net.dims[net.n_layers];
  const int64_t P = net.P;
  for (int64_t blk = 0; blk < blocks; ++blk) {
    Block<T> buf(net, 1, (int)n_in);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t f = 0; f < n_in; ++f) buf.xin[f] = splat<V_<T>>(0.0) + x[r * n_in + f];
      buf.forward(p + blk * P * W, 1);
      const V_<T>* z = buf.output(net.n_layers - 1);
      for (int l = 0; l < W; ++l)
        for (int c = 0; c < C; ++c) out[((blk * W + l) * n + r) * C + c] = z[c][l];
    }
  }
}

}  // namespace

extern "C" {

int dls_lanes(int dtype_bytes) { return VBYTES / dtype_bytes; }

void dls_epoch(int dtype_bytes, int n_layers, const int32_t* dims, const int64_t* weight, const int64_t* bias,
               const int32_t* acts, int max_acts, int64_t P, const void* x, const int64_t* labels,
               const void* targets, const int64_t* order, int64_t n, int64_t n_in, int loss, int batch,
               int64_t blocks, const int32_t* rules, void* p, void* s0, void* s1, double* steps,
               const double* hyper, const uint8_t* on, double* mean, void* trace_loss, void* trace_norm) {
  Net net{n_layers, dims, weight, bias, acts, max_acts, P};
  Data data{x, labels, targets, order, n, n_in, loss, batch};
  if (dtype_bytes == 8)
    epoch_all<double>(net, data, blocks, rules, (double*)p, (double*)s0, (double*)s1, steps, hyper, on, mean,
                      (double*)trace_loss, (double*)trace_norm);
  else
    epoch_all<float>(net, data, blocks, rules, (float*)p, (float*)s0, (float*)s1, steps, hyper, on, mean,
                     (float*)trace_loss, (float*)trace_norm);
}

void dls_predict(int dtype_bytes, int n_layers, const int32_t* dims, const int64_t* weight, const int64_t* bias,
                 const int32_t* acts, int max_acts, int64_t P, int64_t blocks, const void* p, const void* x,
                 int64_t n, int64_t n_in, void* out) {
  Net net{n_layers, dims, weight, bias, acts, max_acts, P};
  if (dtype_bytes == 8)
    predict_all<double>(net, blocks, (const double*)p, (const double*)x, n, n_in, (double*)out);
  else
    predict_all<float>(net, blocks, (const float*)p, (const float*)x, n, n_in, (float*)out);
}

}  // extern "C"

// Thin vector types with the handful of operations the update rules need.
// Every type computes each operation with one IEEE-754 instruction (no FMA,
// no approximations), so all ISA paths and the NumPy reference agree bit for
// bit. Included by loops.hpp inside an ISA-specific namespace: each
// translation unit gets its own copies, built with its own target flags.
//
// Requires: <immintrin.h> (x86), <cstdint>, <cstring> included beforehand.

#define FA_INLINE inline __attribute__((always_inline))

// ---- Division by a loop constant ------------------------------------------
// x / c for a constant c of the element type, correctly rounded. float lanes
// take x * (1/c) in double and round once to float instead of dividing
// (the divider is the bottleneck of Adam at two threads). This is exact: the
// double product is within 2^-52 (relative) of x/c, while x/c, a quotient of
// two 24-bit significands, is never a float rounding midpoint and lies at
// least 2^-49 (relative) from every one, subnormal and overflow boundaries
// included; so both round to the same float. double lanes divide.
template <class T>
struct Divisor {
  T c;
  double recip;
  explicit Divisor(double x) : c(static_cast<T>(x)), recip(1.0 / static_cast<double>(static_cast<T>(x))) {}
};

// ---- Scalar: the portable path, and the tail of every vector path ----------
template <class T>
struct Scalar {
  using elem = T;
  static constexpr int W = 1;
  T v;
  static FA_INLINE Scalar load(const T* p) { return {*p}; }
  static FA_INLINE Scalar set1(T x) { return {x}; }
  FA_INLINE void store(T* p) const { *p = v; }
  friend FA_INLINE Scalar operator+(Scalar a, Scalar b) { return {a.v + b.v}; }
  friend FA_INLINE Scalar operator-(Scalar a, Scalar b) { return {a.v - b.v}; }
  friend FA_INLINE Scalar operator*(Scalar a, Scalar b) { return {a.v * b.v}; }
  friend FA_INLINE Scalar operator/(Scalar a, Scalar b) { return {a.v / b.v}; }
  friend FA_INLINE Scalar operator-(Scalar a) { return {-a.v}; }
  friend FA_INLINE Scalar div_by(Scalar a, const Divisor<T>& d) {
    if constexpr (sizeof(T) == 4) return {static_cast<float>(static_cast<double>(a.v) * d.recip)};
    else return {a.v / d.c};
  }
  friend FA_INLINE Scalar vsqrt(Scalar a) {
    // float stays in float: one correctly rounded sqrtss, as NumPy does.
    if constexpr (sizeof(T) == 4) return {__builtin_sqrtf(a.v)};
    else return {__builtin_sqrt(a.v)};
  }
  // np.maximum: NaN if either operand is NaN.
  // np.abs: the sign bit cleared (NaN payloads kept, -0 -> +0).
  friend FA_INLINE Scalar vabs(Scalar a) {
    if constexpr (sizeof(T) == 4) return {__builtin_fabsf(a.v)};
    else return {__builtin_fabs(a.v)};
  }
  friend FA_INLINE Scalar max_nan(Scalar a, Scalar b) {
    if (a.v != a.v) return a;
    if (b.v != b.v) return b;
    return {a.v > b.v ? a.v : b.v};
  }
  // NaN/Inf -> +0, counting the replacements.
  friend FA_INLINE Scalar finite_or_zero(Scalar a, std::uint64_t& bad) {
    const bool finite = __builtin_fabs(static_cast<double>(a.v)) < __builtin_inf();
    bad += !finite;
    return {finite ? a.v : T(0)};
  }
  friend FA_INLINE std::uint64_t count_nonfinite(Scalar a) {
    return !(__builtin_fabs(static_cast<double>(a.v)) < __builtin_inf());
  }
};

// Sums in kNormLanes float64 lanes; lane j takes the elements whose index in
// the chunk is j modulo kNormLanes. A block is kNormLanes elements; `k` is the
// index of the vector inside the current block. add(x) adds x*x, and
// add_product(x, y) adds x*y, both converted to float64 first (the norm, and
// a rule's per-tensor reductions).
template <class V>
struct SqAcc;

template <class T>
struct SqAcc<Scalar<T>> {
  double lane[kNormLanes] = {};
  FA_INLINE void add(Scalar<T> x, int k) {
    const double d = static_cast<double>(x.v);
    lane[k] = lane[k] + d * d;
  }
  FA_INLINE void add_product(Scalar<T> x, Scalar<T> y, int k) {
    lane[k] = lane[k] + static_cast<double>(x.v) * static_cast<double>(y.v);
  }
  FA_INLINE void to_lanes(double* out) const {
    for (int j = 0; j < kNormLanes; ++j) out[j] = lane[j];
  }
  FA_INLINE void from_lanes(const double* in) {
    for (int j = 0; j < kNormLanes; ++j) lane[j] = in[j];
  }
};

#if defined(__AVX2__)
// ---- AVX2 (+FMA for the CPU check; no FMA instructions are emitted) --------
struct F32x8 {
  using elem = float;
  static constexpr int W = 8;
  __m256 v;
  static FA_INLINE F32x8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static FA_INLINE F32x8 set1(float x) { return {_mm256_set1_ps(x)}; }
  FA_INLINE void store(float* p) const { _mm256_storeu_ps(p, v); }
  friend FA_INLINE F32x8 operator+(F32x8 a, F32x8 b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend FA_INLINE F32x8 operator-(F32x8 a, F32x8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend FA_INLINE F32x8 operator*(F32x8 a, F32x8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend FA_INLINE F32x8 operator/(F32x8 a, F32x8 b) { return {_mm256_div_ps(a.v, b.v)}; }
  friend FA_INLINE F32x8 operator-(F32x8 a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))}; }
  friend FA_INLINE F32x8 div_by(F32x8 a, const Divisor<float>& d) {
    const __m256d r = _mm256_set1_pd(d.recip);
    const __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a.v)), r));
    const __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1)), r));
    return {_mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1)};
  }
  friend FA_INLINE F32x8 vsqrt(F32x8 a) { return {_mm256_sqrt_ps(a.v)}; }
  friend FA_INLINE F32x8 vabs(F32x8 a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
  friend FA_INLINE F32x8 max_nan(F32x8 a, F32x8 b) {
    const __m256 m = _mm256_max_ps(a.v, b.v);  // b when either is NaN
    return {_mm256_blendv_ps(m, a.v, _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q))};
  }
  static FA_INLINE __m256 finite_mask(__m256 x) {
    const __m256 abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    return _mm256_cmp_ps(abs, _mm256_set1_ps(__builtin_inff()), _CMP_LT_OQ);
  }
  friend FA_INLINE F32x8 finite_or_zero(F32x8 a, std::uint64_t& bad) {
    const __m256 ok = finite_mask(a.v);
    bad += W - __builtin_popcount(_mm256_movemask_ps(ok));
    return {_mm256_and_ps(a.v, ok)};
  }
  friend FA_INLINE std::uint64_t count_nonfinite(F32x8 a) {
    return W - __builtin_popcount(_mm256_movemask_ps(finite_mask(a.v)));
  }
};

struct F64x4 {
  using elem = double;
  static constexpr int W = 4;
  __m256d v;
  static FA_INLINE F64x4 load(const double* p) { return {_mm256_loadu_pd(p)}; }
  static FA_INLINE F64x4 set1(double x) { return {_mm256_set1_pd(x)}; }
  FA_INLINE void store(double* p) const { _mm256_storeu_pd(p, v); }
  friend FA_INLINE F64x4 operator+(F64x4 a, F64x4 b) { return {_mm256_add_pd(a.v, b.v)}; }
  friend FA_INLINE F64x4 operator-(F64x4 a, F64x4 b) { return {_mm256_sub_pd(a.v, b.v)}; }
  friend FA_INLINE F64x4 operator*(F64x4 a, F64x4 b) { return {_mm256_mul_pd(a.v, b.v)}; }
  friend FA_INLINE F64x4 operator/(F64x4 a, F64x4 b) { return {_mm256_div_pd(a.v, b.v)}; }
  friend FA_INLINE F64x4 div_by(F64x4 a, const Divisor<double>& d) { return {_mm256_div_pd(a.v, _mm256_set1_pd(d.c))}; }
  friend FA_INLINE F64x4 operator-(F64x4 a) { return {_mm256_xor_pd(a.v, _mm256_set1_pd(-0.0))}; }
  friend FA_INLINE F64x4 vsqrt(F64x4 a) { return {_mm256_sqrt_pd(a.v)}; }
  friend FA_INLINE F64x4 vabs(F64x4 a) { return {_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v)}; }
  friend FA_INLINE F64x4 max_nan(F64x4 a, F64x4 b) {
    const __m256d m = _mm256_max_pd(a.v, b.v);
    return {_mm256_blendv_pd(m, a.v, _mm256_cmp_pd(a.v, a.v, _CMP_UNORD_Q))};
  }
  static FA_INLINE __m256d finite_mask(__m256d x) {
    const __m256d abs = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x);
    return _mm256_cmp_pd(abs, _mm256_set1_pd(__builtin_inf()), _CMP_LT_OQ);
  }
  friend FA_INLINE F64x4 finite_or_zero(F64x4 a, std::uint64_t& bad) {
    const __m256d ok = finite_mask(a.v);
    bad += W - __builtin_popcount(_mm256_movemask_pd(ok));
    return {_mm256_and_pd(a.v, ok)};
  }
  friend FA_INLINE std::uint64_t count_nonfinite(F64x4 a) {
    return W - __builtin_popcount(_mm256_movemask_pd(finite_mask(a.v)));
  }
};

template <>
struct SqAcc<F32x8> {  // 2 vectors per block, each feeding 8 lanes (2 x 4 doubles)
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
  FA_INLINE void add(F32x8 x, int k) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x.v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x.v, 1));
    acc[2 * k] = _mm256_add_pd(acc[2 * k], _mm256_mul_pd(lo, lo));
    acc[2 * k + 1] = _mm256_add_pd(acc[2 * k + 1], _mm256_mul_pd(hi, hi));
  }
  FA_INLINE void add_product(F32x8 x, F32x8 y, int k) {
    const __m256d xl = _mm256_cvtps_pd(_mm256_castps256_ps128(x.v));
    const __m256d xh = _mm256_cvtps_pd(_mm256_extractf128_ps(x.v, 1));
    const __m256d yl = _mm256_cvtps_pd(_mm256_castps256_ps128(y.v));
    const __m256d yh = _mm256_cvtps_pd(_mm256_extractf128_ps(y.v, 1));
    acc[2 * k] = _mm256_add_pd(acc[2 * k], _mm256_mul_pd(xl, yl));
    acc[2 * k + 1] = _mm256_add_pd(acc[2 * k + 1], _mm256_mul_pd(xh, yh));
  }
  FA_INLINE void to_lanes(double* out) const {
    for (int j = 0; j < 4; ++j) _mm256_storeu_pd(out + 4 * j, acc[j]);
  }
  FA_INLINE void from_lanes(const double* in) {
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_loadu_pd(in + 4 * j);
  }
};

template <>
struct SqAcc<F64x4> {  // 4 vectors per block, 4 lanes each
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
  FA_INLINE void add(F64x4 x, int k) { acc[k] = _mm256_add_pd(acc[k], _mm256_mul_pd(x.v, x.v)); }
  FA_INLINE void add_product(F64x4 x, F64x4 y, int k) {
    acc[k] = _mm256_add_pd(acc[k], _mm256_mul_pd(x.v, y.v));
  }
  FA_INLINE void to_lanes(double* out) const {
    for (int j = 0; j < 4; ++j) _mm256_storeu_pd(out + 4 * j, acc[j]);
  }
  FA_INLINE void from_lanes(const double* in) {
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_loadu_pd(in + 4 * j);
  }
};
#endif  // __AVX2__

#if defined(__AVX512F__)
// ---- AVX-512 (F only) ---------------------------------------------------------
struct F32x16 {
  using elem = float;
  static constexpr int W = 16;
  __m512 v;
  static FA_INLINE F32x16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static FA_INLINE F32x16 set1(float x) { return {_mm512_set1_ps(x)}; }
  FA_INLINE void store(float* p) const { _mm512_storeu_ps(p, v); }
  friend FA_INLINE F32x16 operator+(F32x16 a, F32x16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend FA_INLINE F32x16 operator-(F32x16 a, F32x16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend FA_INLINE F32x16 operator*(F32x16 a, F32x16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend FA_INLINE F32x16 operator/(F32x16 a, F32x16 b) { return {_mm512_div_ps(a.v, b.v)}; }
  friend FA_INLINE F32x16 div_by(F32x16 a, const Divisor<float>& d) {
    const __m512d r = _mm512_set1_pd(d.recip);
    const __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(a.v)), r));
    const __m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1))), r));
    return {_mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)),
                                                 _mm256_castps_pd(hi), 1))};
  }
  friend FA_INLINE F32x16 operator-(F32x16 a) {
    return {_mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN)))};
  }
  friend FA_INLINE F32x16 vsqrt(F32x16 a) { return {_mm512_sqrt_ps(a.v)}; }
  friend FA_INLINE F32x16 vabs(F32x16 a) {
    return {_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MAX)))};
  }
  friend FA_INLINE F32x16 max_nan(F32x16 a, F32x16 b) {
    const __m512 m = _mm512_max_ps(a.v, b.v);
    return {_mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(a.v, a.v, _CMP_UNORD_Q), a.v)};
  }
  static FA_INLINE __mmask16 finite_mask(__m512 x) {
    const __m512 abs = _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MAX)));
    return _mm512_cmp_ps_mask(abs, _mm512_set1_ps(__builtin_inff()), _CMP_LT_OQ);
  }
  friend FA_INLINE F32x16 finite_or_zero(F32x16 a, std::uint64_t& bad) {
    const __mmask16 ok = finite_mask(a.v);
    bad += W - __builtin_popcount(ok);
    return {_mm512_maskz_mov_ps(ok, a.v)};
  }
  friend FA_INLINE std::uint64_t count_nonfinite(F32x16 a) {
    return W - __builtin_popcount(finite_mask(a.v));
  }
};

struct F64x8 {
  using elem = double;
  static constexpr int W = 8;
  __m512d v;
  static FA_INLINE F64x8 load(const double* p) { return {_mm512_loadu_pd(p)}; }
  static FA_INLINE F64x8 set1(double x) { return {_mm512_set1_pd(x)}; }
  FA_INLINE void store(double* p) const { _mm512_storeu_pd(p, v); }
  friend FA_INLINE F64x8 operator+(F64x8 a, F64x8 b) { return {_mm512_add_pd(a.v, b.v)}; }
  friend FA_INLINE F64x8 operator-(F64x8 a, F64x8 b) { return {_mm512_sub_pd(a.v, b.v)}; }
  friend FA_INLINE F64x8 operator*(F64x8 a, F64x8 b) { return {_mm512_mul_pd(a.v, b.v)}; }
  friend FA_INLINE F64x8 operator/(F64x8 a, F64x8 b) { return {_mm512_div_pd(a.v, b.v)}; }
  friend FA_INLINE F64x8 div_by(F64x8 a, const Divisor<double>& d) { return {_mm512_div_pd(a.v, _mm512_set1_pd(d.c))}; }
  friend FA_INLINE F64x8 operator-(F64x8 a) {
    return {_mm512_castsi512_pd(
        _mm512_xor_si512(_mm512_castpd_si512(a.v), _mm512_set1_epi64(INT64_MIN)))};
  }
  friend FA_INLINE F64x8 vsqrt(F64x8 a) { return {_mm512_sqrt_pd(a.v)}; }
  friend FA_INLINE F64x8 vabs(F64x8 a) {
    return {_mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(a.v), _mm512_set1_epi64(INT64_MAX)))};
  }
  friend FA_INLINE F64x8 max_nan(F64x8 a, F64x8 b) {
    const __m512d m = _mm512_max_pd(a.v, b.v);
    return {_mm512_mask_mov_pd(m, _mm512_cmp_pd_mask(a.v, a.v, _CMP_UNORD_Q), a.v)};
  }
  static FA_INLINE __mmask8 finite_mask(__m512d x) {
    const __m512d abs = _mm512_castsi512_pd(
        _mm512_and_si512(_mm512_castpd_si512(x), _mm512_set1_epi64(INT64_MAX)));
    return _mm512_cmp_pd_mask(abs, _mm512_set1_pd(__builtin_inf()), _CMP_LT_OQ);
  }
  friend FA_INLINE F64x8 finite_or_zero(F64x8 a, std::uint64_t& bad) {
    const __mmask8 ok = finite_mask(a.v);
    bad += W - __builtin_popcount(ok);
    return {_mm512_maskz_mov_pd(ok, a.v)};
  }
  friend FA_INLINE std::uint64_t count_nonfinite(F64x8 a) {
    return W - __builtin_popcount(finite_mask(a.v));
  }
};

template <>
struct SqAcc<F32x16> {  // 1 vector per block: low 8 -> lanes 0..7, high 8 -> 8..15
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  FA_INLINE void add(F32x16 x, int) {
    const __m512d a = _mm512_cvtps_pd(_mm512_castps512_ps256(x.v));
    const __m512d b = _mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x.v), 1)));
    lo = _mm512_add_pd(lo, _mm512_mul_pd(a, a));
    hi = _mm512_add_pd(hi, _mm512_mul_pd(b, b));
  }
  FA_INLINE void add_product(F32x16 x, F32x16 y, int) {
    const __m512d xl = _mm512_cvtps_pd(_mm512_castps512_ps256(x.v));
    const __m512d xh = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x.v), 1)));
    const __m512d yl = _mm512_cvtps_pd(_mm512_castps512_ps256(y.v));
    const __m512d yh = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(y.v), 1)));
    lo = _mm512_add_pd(lo, _mm512_mul_pd(xl, yl));
    hi = _mm512_add_pd(hi, _mm512_mul_pd(xh, yh));
  }
  FA_INLINE void to_lanes(double* out) const {
    _mm512_storeu_pd(out, lo);
    _mm512_storeu_pd(out + 8, hi);
  }
  FA_INLINE void from_lanes(const double* in) {
    lo = _mm512_loadu_pd(in);
    hi = _mm512_loadu_pd(in + 8);
  }
};

template <>
struct SqAcc<F64x8> {  // 2 vectors per block
  __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  FA_INLINE void add(F64x8 x, int k) { acc[k] = _mm512_add_pd(acc[k], _mm512_mul_pd(x.v, x.v)); }
  FA_INLINE void add_product(F64x8 x, F64x8 y, int k) {
    acc[k] = _mm512_add_pd(acc[k], _mm512_mul_pd(x.v, y.v));
  }
  FA_INLINE void to_lanes(double* out) const {
    _mm512_storeu_pd(out, acc[0]);
    _mm512_storeu_pd(out + 8, acc[1]);
  }
  FA_INLINE void from_lanes(const double* in) {
    acc[0] = _mm512_loadu_pd(in);
    acc[1] = _mm512_loadu_pd(in + 8);
  }
};
#endif  // __AVX512F__

// The widest vector of this translation unit for each dtype.
#if defined(__AVX512F__)
template <class T> struct WidestImpl;
template <> struct WidestImpl<float> { using type = F32x16; };
template <> struct WidestImpl<double> { using type = F64x8; };
#elif defined(__AVX2__)
template <class T> struct WidestImpl;
template <> struct WidestImpl<float> { using type = F32x8; };
template <> struct WidestImpl<double> { using type = F64x4; };
#else
template <class T> struct WidestImpl { using type = Scalar<T>; };
#endif
template <class T>
using Widest = typename WidestImpl<T>::type;

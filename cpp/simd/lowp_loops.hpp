// Element loops of low-precision storage (cpp/core/lowp.hpp): widening
// bfloat16/float16 to float32, rounding float32 back (to nearest even, or
// stochastically for bfloat16), and 8-bit block (de)quantization. Every
// operation is exact integer work, one comparison or one IEEE multiply, so
// the scalar and vector paths agree bit for bit; fastadapt.reference.lowp is
// the NumPy statement of the same. Included by loops.hpp inside the ISA
// namespace. The AVX-512 and AVX2 paths have vector loops; the portable one
// runs the scalar loops (which also finish every vector loop's tail).
#pragma once

namespace lowp {

FA_INLINE std::uint32_t bits_of(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
FA_INLINE float float_of(std::uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// float32 -> bfloat16, round to nearest even; NaN stays NaN (quiet bit set).
FA_INLINE std::uint16_t bf16_rne(float x) {
  const std::uint32_t b = bits_of(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((b >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// Stochastic: add 16 random bits below the kept ones, truncate. Non-finite
// values round to nearest (inf stays inf, NaN stays NaN).
FA_INLINE std::uint16_t bf16_sr(float x, std::uint32_t noise) {
  const std::uint32_t b = bits_of(x);
  if ((b & 0x7f800000u) == 0x7f800000u) return bf16_rne(x);
  return static_cast<std::uint16_t>((b + (noise & 0xffffu)) >> 16);
}

// Normalized magnitude, clamped to [0, 1]; NaN and negatives -> 0.
FA_INLINE float clamp01(float a) { return a > 0.0f ? (a < 1.0f ? a : 1.0f) : 0.0f; }

FA_INLINE int qcode(const QMap& m, float x, float inv) {
  const float a = clamp01((m.is_signed ? std::fabs(x) : x) * inv);
  int count = 0;
  for (int L = 0; L < kQLevels; ++L) count += a >= m.thr[L] ? 1 : 0;
  int j = 0;
  if (count) {
    const int L = count - 1;
    const float t = (a * m.dec[L] - 0.1f) * m.invstep[L] - 0.5f;
    int k = static_cast<int>(__builtin_roundevenf(t));
    k = k < 0 ? 0 : (k > m.last[L] ? m.last[L] : k);
    j = m.offset[L] + k;
  }
  // Unsigned (second moments): a positive value never becomes 0 (see lowp.hpp).
  if (!m.is_signed) return (a > 0.0f && j == 0) ? 1 : j;
  return (bits_of(x) >> 31) ? 127 - (j < 127 ? j : 127) : 127 + j;
}

// absmax of a block, NaN if any element is NaN (stored as the canonical quiet NaN).
FA_INLINE float canonical(float absmax) { return absmax != absmax ? float_of(0x7fc00000u) : absmax; }
FA_INLINE float inverse(float absmax) { return absmax > 0.0f ? 1.0f / absmax : 0.0f; }

}  // namespace lowp

// ---- scalar loops (every ISA's tails; the portable and AVX2 paths) ---------

inline void widen_scalar(DType src, const void* in, float* out, std::size_t n) {
  if (src == kBF16) {
    const std::uint16_t* s = static_cast<const std::uint16_t*>(in);
    for (std::size_t i = 0; i < n; ++i) out[i] = lowp::float_of(static_cast<std::uint32_t>(s[i]) << 16);
  } else {
    const _Float16* s = static_cast<const _Float16*>(in);
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(s[i]);
  }
}

inline void narrow_scalar(DType dst, const float* in, void* out, std::size_t n) {
  if (dst == kBF16) {
    std::uint16_t* d = static_cast<std::uint16_t*>(out);
    for (std::size_t i = 0; i < n; ++i) d[i] = lowp::bf16_rne(in[i]);
  } else {
    _Float16* d = static_cast<_Float16*>(out);
    for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<_Float16>(in[i]);
  }
}

inline void narrow_sr_scalar(const float* in, void* out, std::size_t n, std::uint32_t key, std::uint64_t first) {
  std::uint16_t* d = static_cast<std::uint16_t*>(out);
  for (std::size_t i = 0; i < n; ++i)
    d[i] = lowp::bf16_sr(in[i], lowbias32(static_cast<std::uint32_t>(first + i) ^ key));
}

inline void dequant_block_scalar(const QMap& m, const std::uint8_t* c, float scale, float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = m.value[c[i]] * scale;
}

inline float absmax_scalar(const float* x, std::size_t n) {
  float mx = 0.0f;
  bool nan = false;
  for (std::size_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    nan |= a != a;
    mx = a > mx ? a : mx;
  }
  return nan ? lowp::float_of(0x7fc00000u) : mx;
}

inline void quant_block_scalar(const QMap& m, const float* x, std::uint8_t* c, float inv, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) c[i] = static_cast<std::uint8_t>(lowp::qcode(m, x[i], inv));
}

#if defined(__AVX512F__)
// ---- AVX-512 --------------------------------------------------------------
namespace lowp {
FA_INLINE __m512i bf16_rne16(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40));
}
FA_INLINE __m512i hash16(__m512i x) {
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb352d));
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(static_cast<int>(0x846ca68bu)));
  return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}
// The level search tables of a map (QMap's oct_* and cnt_*, lowp.hpp) in
// registers: aligned loads.
struct QTables16 {
  __m512i base_lo, base_hi, thr_lo, thr_hi, offset, offset_neg, last;
  __m512 dec, invstep;
  explicit QTables16(const QMap& m)
      : base_lo(_mm512_load_si512(m.oct_base)), base_hi(_mm512_load_si512(m.oct_base + 16)),
        thr_lo(_mm512_load_si512(m.oct_thr)), thr_hi(_mm512_load_si512(m.oct_thr + 16)),
        offset(_mm512_load_si512(m.cnt_offset)), offset_neg(_mm512_load_si512(m.cnt_offset_neg)),
        last(_mm512_load_si512(m.cnt_last)), dec(_mm512_load_ps(m.cnt_dec)), invstep(_mm512_load_ps(m.cnt_invstep)) {}
};
// finite: the block's inverse scale is finite and non-zero, so every x is
// finite and a = |x| * inv cannot be NaN (signed: the clamp is one min).
template <bool is_signed, bool finite>
FA_INLINE __m512i qcode16(const QTables16& q, __m512 x, __m512 inv) {
  __m512 a;
  __mmask16 pos = 0xffff;
  if constexpr (is_signed && finite) {
    a = _mm512_min_ps(_mm512_mul_ps(_mm512_abs_ps(x), inv), _mm512_set1_ps(1.0f));
  } else {
    // clamp01: a > 0 ? min(a, 1) : 0 (NaN -> 0)
    const __m512 ax = _mm512_mul_ps(is_signed ? _mm512_abs_ps(x) : x, inv);
    pos = _mm512_cmp_ps_mask(ax, _mm512_setzero_ps(), _CMP_GT_OQ);
    a = _mm512_maskz_min_ps(pos, ax, _mm512_set1_ps(1.0f));
  }
  // The count of thresholds <= a from a's octave (lowp.hpp; a >= 0: float
  // order is integer order): octaves below 2^-31 are read as that one, whose
  // row counts nothing; the permutes use the index's low 5 bits, E - 96.
  const __m512i abits = _mm512_castps_si512(a);
  const __m512i e = _mm512_srli_epi32(_mm512_max_epi32(abits, _mm512_set1_epi32(96 << 23)), 23);
  const __m512i base = _mm512_permutex2var_epi32(q.base_lo, e, q.base_hi);
  const __mmask16 up = _mm512_cmpge_epi32_mask(abits, _mm512_permutex2var_epi32(q.thr_lo, e, q.thr_hi));
  const __m512i count = _mm512_mask_add_epi32(base, up, base, _mm512_set1_epi32(1));
  const __m512 t = _mm512_sub_ps(
      _mm512_mul_ps(_mm512_sub_ps(_mm512_mul_ps(a, _mm512_permutexvar_ps(count, q.dec)), _mm512_set1_ps(0.1f)),
                    _mm512_permutexvar_ps(count, q.invstep)),
      _mm512_set1_ps(0.5f));
  // Round to nearest even and convert in one (|t| < 2^31: the same integer as
  // roundscale then truncation); k >= 0 (lowp.hpp).
  const __m512i k = _mm512_min_epi32(_mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                     _mm512_permutexvar_epi32(count, q.last));
  if constexpr (!is_signed) {  // positive: at least 1 (count 0: j = 0)
    const __m512i j = _mm512_add_epi32(_mm512_permutexvar_epi32(count, q.offset), k);
    return _mm512_mask_max_epi32(j, pos, j, _mm512_set1_epi32(1));
  }
  // 127 + j, or for a negative x 127 - min(j, 127): from the rows' offsets
  const __mmask16 neg = _mm512_cmplt_epi32_mask(_mm512_castps_si512(x), _mm512_setzero_si512());
  const __m512i o = _mm512_mask_permutexvar_epi32(_mm512_permutexvar_epi32(count, q.offset), neg, count, q.offset_neg);
  return _mm512_mask_sub_epi32(_mm512_add_epi32(o, k), neg, o, k);
}
// Dequantization in closed form, as dequant_block8 (AVX2) does it 16 lanes
// wide: the map's float32 formula gives value[]'s bits (no table gather, which
// costs ~16 loads per vector).
template <bool is_signed>
FA_INLINE std::size_t dequant_block16(const QMap& m, const std::uint8_t* codes, float scale, float* out,
                                      std::size_t len) {
  const __m512 s = _mm512_set1_ps(scale);
  const __m512 step = _mm512_castps256_ps512(_mm256_loadu_ps(m.step));
  const __m512 invdec = _mm512_castps256_ps512(_mm256_loadu_ps(m.invdec));
  const __m512i one = _mm512_set1_epi32(1);
  std::size_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)));
    __m512i j, u;
    __mmask16 neg = 0;
    if constexpr (is_signed) {
      const __m512i d = _mm512_sub_epi32(c, _mm512_set1_epi32(127));
      neg = _mm512_cmplt_epi32_mask(d, _mm512_setzero_si512());
      j = _mm512_abs_epi32(d);
      u = j;
    } else {
      j = c;
      u = _mm512_add_epi32(c, one);
    }
    const __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(u)), 23),
                                       _mm512_set1_epi32(127));
    __m512i L = is_signed ? e : _mm512_sub_epi32(e, one);
    L = _mm512_min_epi32(_mm512_max_epi32(L, _mm512_setzero_si512()), _mm512_set1_epi32(kQLevels - 1));
    const __m512i k = _mm512_sub_epi32(u, _mm512_sllv_epi32(one, e));
    const __m512 kf = _mm512_add_ps(_mm512_cvtepi32_ps(k), _mm512_set1_ps(0.5f));
    __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_set1_ps(0.1f), _mm512_mul_ps(_mm512_permutexvar_ps(L, step), kf)),
                             _mm512_permutexvar_ps(L, invdec));
    v = _mm512_maskz_mov_ps(_mm512_test_epi32_mask(j, j), v);  // j = 0: the value 0
    if constexpr (is_signed)  // (integer or: _mm512_or_ps needs AVX-512DQ)
      v = _mm512_castsi512_ps(_mm512_mask_or_epi32(_mm512_castps_si512(v), neg, _mm512_castps_si512(v),
                                                   _mm512_set1_epi32(static_cast<int>(0x80000000u))));
    _mm512_storeu_ps(out + i, _mm512_mul_ps(v, s));
  }
  return i;
}
// With AVX512_VBMI (checked at run time: the translation unit targets
// AVX-512F only): value[c] itself, 64 codes at a time, from the map's byte
// planes: per plane, two 128-entry byte permutes and a blend on the code's top
// bit; byte and word unpacks interleave the planes into float32s. The unpacks
// work within 128-bit lanes, so the codes' 4-byte groups are first moved
// (group 4q + l to place 4l + q) for each result to hold 16 consecutive values.
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) inline std::size_t dequant_block64_vbmi(
    const QMap& m, const std::uint8_t* codes, float scale, float* out, std::size_t len) {
  if (len < 64) return 0;
  __m512i t[4][4];  // plane p, codes 64q..64q+63
  for (int p = 0; p < 4; ++p)
    for (int q = 0; q < 4; ++q) t[p][q] = _mm512_load_si512(m.vplane[p] + 64 * q);
  const __m512 s = _mm512_set1_ps(scale);
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  std::size_t i = 0;
  for (; i + 64 <= len; i += 64) {
    const __m512i c = _mm512_permutexvar_epi32(order, _mm512_loadu_si512(codes + i));
    const __mmask64 hi = _mm512_movepi8_mask(c);  // code >= 128
    __m512i b[4];
    for (int p = 0; p < 4; ++p)
      b[p] = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(t[p][0], c, t[p][1]),
                                    _mm512_permutex2var_epi8(t[p][2], c, t[p][3]));
    const __m512i w01lo = _mm512_unpacklo_epi8(b[0], b[1]), w01hi = _mm512_unpackhi_epi8(b[0], b[1]);
    const __m512i w23lo = _mm512_unpacklo_epi8(b[2], b[3]), w23hi = _mm512_unpackhi_epi8(b[2], b[3]);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(w01lo, w23lo)), s));
    _mm512_storeu_ps(out + i + 16, _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(w01lo, w23lo)), s));
    _mm512_storeu_ps(out + i + 32, _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(w01hi, w23hi)), s));
    _mm512_storeu_ps(out + i + 48, _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(w01hi, w23hi)), s));
  }
  return i;
}
// With AVX512BW: float32 -> bfloat16 (nearest even), 32 at a time: the
// rounded value is the upper half of b + 0x7fff + lsb (NaN: of b with the
// quiet bit set), and one word permute gathers the upper halves of two
// vectors in order (instead of a shift and vpmovdw, 2 uops, per 16).
__attribute__((target("avx512f,avx512bw"))) inline std::size_t narrow_bf16_bw(const float* in, std::uint16_t* out,
                                                                              std::size_t n) {
  const __m512i odd = _mm512_setr_epi32(0x00030001, 0x00070005, 0x000b0009, 0x000f000d, 0x00130011, 0x00170015,
                                        0x001b0019, 0x001f001d, 0x00230021, 0x00270025, 0x002b0029, 0x002f002d,
                                        0x00330031, 0x00370035, 0x003b0039, 0x003f003d);
  auto hi = [](__m512 x) {
    const __m512i b = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb);
    return _mm512_mask_or_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), b, _mm512_set1_epi32(0x00400000));
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    _mm512_storeu_si512(out + i, _mm512_permutex2var_epi16(hi(_mm512_loadu_ps(in + i)), odd,
                                                           hi(_mm512_loadu_ps(in + i + 16))));
  return i;
}
// The codes of one block's vector part; returns how many were written.
template <bool is_signed, bool finite>
FA_INLINE std::size_t quant_block16(const QTables16& q, const float* x, std::uint8_t* codes, float inv, std::size_t len) {
  const __m512 vinv = _mm512_set1_ps(inv);
  std::size_t i = 0;
  for (; i + 16 <= len; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i),
                     _mm512_cvtepi32_epi8(qcode16<is_signed, finite>(q, _mm512_loadu_ps(x + i), vinv)));
  return i;
}
}  // namespace lowp
#elif defined(__AVX2__)
// ---- AVX2 (+F16C) -----------------------------------------------------------
namespace lowp {
FA_INLINE __m256i bf16_rne8(__m256 x) {
  const __m256i b = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  const __m256i q = _mm256_or_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(r, q, nan);
}
// 8 values < 65536 in 32-bit lanes -> 8 uint16
FA_INLINE __m128i pack16(__m256i r) {
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}
FA_INLINE __m256i hash8(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}
struct QTables8 {
  __m256i thr[kQLevels];  // bits(thr[L]) - 1: for a >= 0, a >= thr[L] iff bits(a) > bits(thr[L]) - 1
  __m256 dec, invstep;
  __m256i offset, last;
  explicit QTables8(const QMap& m) {
    for (int L = 0; L < kQLevels; ++L) thr[L] = _mm256_set1_epi32(static_cast<int>(bits_of(m.thr[L]) - 1u));
    dec = _mm256_loadu_ps(m.dec);
    invstep = _mm256_loadu_ps(m.invstep);
    offset = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m.offset));
    last = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m.last));
  }
};
template <bool is_signed>
FA_INLINE __m256i qcode8(const QTables8& q, __m256 x, __m256 inv) {
  __m256 ax = x;
  if constexpr (is_signed) ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  __m256 a = _mm256_mul_ps(ax, inv);
  const __m256 pos = _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ);
  const __m256 lt1 = _mm256_cmp_ps(a, _mm256_set1_ps(1.0f), _CMP_LT_OQ);
  a = _mm256_blendv_ps(_mm256_set1_ps(1.0f), a, lt1);
  a = _mm256_and_ps(a, pos);
  // The level: thresholds passed, counted with integer comparisons of the bits
  // (a is in [0, 1]: float order is integer order), off the float pipes.
  const __m256i abits = _mm256_castps_si256(a);
  __m256i count = _mm256_setzero_si256();  // (a true comparison is -1: subtract it)
  for (int L = 0; L < kQLevels; ++L) count = _mm256_sub_epi32(count, _mm256_cmpgt_epi32(abits, q.thr[L]));
  const __m256i zero = _mm256_cmpeq_epi32(count, _mm256_setzero_si256());
  const __m256i L = _mm256_max_epi32(_mm256_sub_epi32(count, _mm256_set1_epi32(1)), _mm256_setzero_si256());
  const __m256 t = _mm256_sub_ps(
      _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(a, _mm256_permutevar8x32_ps(q.dec, L)), _mm256_set1_ps(0.1f)),
                    _mm256_permutevar8x32_ps(q.invstep, L)),
      _mm256_set1_ps(0.5f));
  __m256i k = _mm256_cvttps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  k = _mm256_min_epi32(_mm256_max_epi32(k, _mm256_setzero_si256()), _mm256_permutevar8x32_epi32(q.last, L));
  const __m256i j = _mm256_andnot_si256(zero, _mm256_add_epi32(_mm256_permutevar8x32_epi32(q.offset, L), k));
  if constexpr (!is_signed)  // positive: at least 1
    return _mm256_max_epi32(j, _mm256_and_si256(_mm256_castps_si256(pos), _mm256_set1_epi32(1)));
  const __m256i neg = _mm256_srai_epi32(_mm256_castps_si256(x), 31);
  const __m256i c127 = _mm256_set1_epi32(127);
  return _mm256_blendv_epi8(_mm256_add_epi32(c127, j), _mm256_sub_epi32(c127, _mm256_min_epi32(j, c127)), neg);
}
// The codes of one block's vector part, 32 at a time (one 32-byte store);
// returns how many were written.
template <bool is_signed>
FA_INLINE std::size_t quant_block8(const QTables8& q, const float* x, std::uint8_t* codes, float inv, std::size_t len);

// Dequantization in closed form (no table gather): the magnitude index j of
// a code, its level L from the exponent of j (signed) or j + 1 (unsigned),
// k = its place in the level, then the map's float32 formula (lowp.hpp),
// which is how the table value[] was computed: the same bits.
template <bool is_signed>
FA_INLINE std::size_t dequant_block8(const QMap& m, const std::uint8_t* codes, float scale, float* out,
                                     std::size_t len) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 step = _mm256_loadu_ps(m.step), invdec = _mm256_loadu_ps(m.invdec);
  const __m256i one = _mm256_set1_epi32(1);
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
    __m256i j, u, neg = _mm256_setzero_si256();
    if constexpr (is_signed) {
      const __m256i d = _mm256_sub_epi32(c, _mm256_set1_epi32(127));
      neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), d);
      j = _mm256_abs_epi32(d);
      u = j;
    } else {
      j = c;
      u = _mm256_add_epi32(c, one);
    }
    const __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(u)), 23),
                                       _mm256_set1_epi32(127));
    __m256i L = is_signed ? e : _mm256_sub_epi32(e, one);
    L = _mm256_min_epi32(_mm256_max_epi32(L, _mm256_setzero_si256()), _mm256_set1_epi32(kQLevels - 1));
    const __m256i k = _mm256_sub_epi32(u, _mm256_sllv_epi32(one, e));
    const __m256 kf = _mm256_add_ps(_mm256_cvtepi32_ps(k), _mm256_set1_ps(0.5f));
    __m256 v = _mm256_mul_ps(_mm256_add_ps(_mm256_set1_ps(0.1f), _mm256_mul_ps(_mm256_permutevar8x32_ps(step, L), kf)),
                             _mm256_permutevar8x32_ps(invdec, L));
    v = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(j, _mm256_setzero_si256())), v);  // j = 0: the value 0
    if constexpr (is_signed) v = _mm256_or_ps(v, _mm256_and_ps(_mm256_castsi256_ps(neg), _mm256_set1_ps(-0.0f)));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(v, s));
  }
  return i;
}

// 8 codes < 256 in 32-bit lanes -> 8 bytes
FA_INLINE void store_codes8(std::uint8_t* out, __m256i c) {
  const __m256i w = _mm256_packus_epi16(_mm256_packus_epi32(c, c), _mm256_setzero_si256());
  const std::uint32_t lo = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(w)));
  const std::uint32_t hi = static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(w, 1)));
  std::memcpy(out, &lo, 4);
  std::memcpy(out + 4, &hi, 4);
}
template <bool is_signed>
FA_INLINE std::size_t quant_block8(const QTables8& q, const float* x, std::uint8_t* codes, float inv, std::size_t len) {
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  std::size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    const __m256i c0 = qcode8<is_signed>(q, _mm256_loadu_ps(x + i), vinv);
    const __m256i c1 = qcode8<is_signed>(q, _mm256_loadu_ps(x + i + 8), vinv);
    const __m256i c2 = qcode8<is_signed>(q, _mm256_loadu_ps(x + i + 16), vinv);
    const __m256i c3 = qcode8<is_signed>(q, _mm256_loadu_ps(x + i + 24), vinv);
    // packs work within 128-bit lanes: each lane ends up with 4 codes of each
    // vector; one permute puts the 4-byte groups in order.
    const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + i), _mm256_permutevar8x32_epi32(b, order));
  }
  for (; i + 8 <= len; i += 8) store_codes8(codes + i, qcode8<is_signed>(q, _mm256_loadu_ps(x + i), vinv));
  return i;
}
}  // namespace lowp
#endif

FA_INLINE void widen_chunk(DType src, const void* in, float* out, std::size_t n) {
  std::size_t i = 0;
#if defined(__AVX512F__)
  if (src == kBF16) {
    const std::uint16_t* s = static_cast<const std::uint16_t*>(in);
    for (; i + 16 <= n; i += 16) {
      const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
      _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
  } else {
    const std::uint16_t* s = static_cast<const std::uint16_t*>(in);
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  }
#elif defined(__AVX2__)
  const std::uint16_t* s = static_cast<const std::uint16_t*>(in);
  if (src == kBF16) {
    for (; i + 8 <= n; i += 8) {
      const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
      _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
  } else {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  }
#endif
  widen_scalar(src, static_cast<const char*>(in) + 2 * i, out + i, n - i);
}

FA_INLINE void narrow_chunk(DType dst, const float* in, void* out, std::size_t n) {
  std::size_t i = 0;
#if defined(__AVX512F__)
  std::uint16_t* d = static_cast<std::uint16_t*>(out);
  if (dst == kBF16) {
    if (lowp_ext.load(std::memory_order_relaxed) & kLowpBw) i = lowp::narrow_bf16_bw(in, d, n);
    for (; i + 16 <= n; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(lowp::bf16_rne16(_mm512_loadu_ps(in + i))));
  } else {
    for (; i + 16 <= n; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                          _mm512_cvtps_ph(_mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#elif defined(__AVX2__)
  std::uint16_t* d = static_cast<std::uint16_t*>(out);
  if (dst == kBF16) {
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), lowp::pack16(lowp::bf16_rne8(_mm256_loadu_ps(in + i))));
  } else {
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#endif
  narrow_scalar(dst, in + i, static_cast<char*>(out) + 2 * i, n - i);
}

FA_INLINE void narrow_sr_chunk(const float* in, void* out, std::size_t n, std::uint32_t key, std::uint64_t first) {
  std::size_t i = 0;
#if defined(__AVX512F__)
  std::uint16_t* d = static_cast<std::uint16_t*>(out);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i vkey = _mm512_set1_epi32(static_cast<int>(key));
  const __m512i exp = _mm512_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(in + i);
    const __m512i b = _mm512_castps_si512(x);
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first + i))), lanes);
    const __m512i noise = _mm512_and_si512(lowp::hash16(_mm512_xor_si512(idx, vkey)), _mm512_set1_epi32(0xffff));
    const __m512i sr = _mm512_srli_epi32(_mm512_add_epi32(b, noise), 16);
    const __mmask16 special = _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, exp), exp);
    const __m512i r = _mm512_mask_blend_epi32(special, sr, lowp::bf16_rne16(x));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_cvtepi32_epi16(r));
  }
#elif defined(__AVX2__)
  std::uint16_t* d = static_cast<std::uint16_t*>(out);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i vkey = _mm256_set1_epi32(static_cast<int>(key));
  const __m256i exp = _mm256_set1_epi32(0x7f800000);
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(in + i);
    const __m256i b = _mm256_castps_si256(x);
    const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first + i))), lanes);
    const __m256i noise = _mm256_and_si256(lowp::hash8(_mm256_xor_si256(idx, vkey)), _mm256_set1_epi32(0xffff));
    const __m256i sr = _mm256_srli_epi32(_mm256_add_epi32(b, noise), 16);
    const __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(b, exp), exp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), lowp::pack16(_mm256_blendv_epi8(sr, lowp::bf16_rne8(x), special)));
  }
#endif
  narrow_sr_scalar(in + i, static_cast<char*>(out) + 2 * i, n - i, key, first + i);
}

// len elements of one block (scale `scale`), 16 at a time where there are.
FA_INLINE void dequant_block(const QMap& m, const std::uint8_t* codes, float scale, float* out, std::size_t len) {
  std::size_t i = 0;
#if defined(__AVX512F__)
  if (lowp_ext.load(std::memory_order_relaxed) & kLowpVbmi) i = lowp::dequant_block64_vbmi(m, codes, scale, out, len);
  i += m.is_signed ? lowp::dequant_block16<true>(m, codes + i, scale, out + i, len - i)
                   : lowp::dequant_block16<false>(m, codes + i, scale, out + i, len - i);
#elif defined(__AVX2__)
  i = m.is_signed ? lowp::dequant_block8<true>(m, codes, scale, out, len)
                  : lowp::dequant_block8<false>(m, codes, scale, out, len);
#endif
  dequant_block_scalar(m, codes + i, scale, out + i, len - i);
}

// n elements from the start of a block; absmax[k] is block k's scale.
inline void dequant_chunk(const QMap& m, const std::uint8_t* codes, const float* absmax, float* out, std::size_t n) {
  for (std::size_t blk = 0; blk * kQBlock < n; ++blk) {
    const std::size_t b0 = blk * kQBlock, len = n - b0 < kQBlock ? n - b0 : kQBlock;
    dequant_block(m, codes + b0, absmax[blk], out + b0, len);
  }
}

inline void quant_chunk(const QMap& m, const float* x, std::uint8_t* codes, float* absmax, std::size_t n) {
#if defined(__AVX512F__)
  const lowp::QTables16 q(m);
#elif defined(__AVX2__)
  const lowp::QTables8 q(m);
#endif
  for (std::size_t blk = 0; blk * kQBlock < n; ++blk) {
    const std::size_t b0 = blk * kQBlock, len = n - b0 < kQBlock ? n - b0 : kQBlock;
    std::size_t i = 0;
    float mx;
#if defined(__AVX512F__)
    {
      // |x|'s bits as integers: the same order, and any NaN above Inf's bits.
      __m512i acc = _mm512_setzero_si512();
      for (; i + 16 <= len; i += 16)
        acc = _mm512_max_epi32(acc, _mm512_and_si512(_mm512_loadu_si512(x + b0 + i), _mm512_set1_epi32(0x7fffffff)));
      const std::uint32_t top = static_cast<std::uint32_t>(_mm512_reduce_max_epi32(acc));
      mx = lowp::float_of(top);
      const float tail = absmax_scalar(x + b0 + i, len - i);
      if (top > 0x7f800000u || tail != tail) mx = lowp::float_of(0x7fc00000u);
      else mx = tail > mx ? tail : mx;
    }
#elif defined(__AVX2__)
    {
      __m256 acc = _mm256_setzero_ps();
      int nan = 0;
      for (; i + 8 <= len; i += 8) {
        const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + b0 + i));
        nan |= _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        acc = _mm256_max_ps(acc, a);
      }
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, acc);
      mx = 0.0f;
      for (float v : lanes) mx = v > mx ? v : mx;
      const float tail = absmax_scalar(x + b0 + i, len - i);
      if (nan || tail != tail) mx = lowp::float_of(0x7fc00000u);
      else mx = tail > mx ? tail : mx;
    }
#else
    mx = absmax_scalar(x + b0, len);
#endif
    absmax[blk] = mx;
    const float inv = lowp::inverse(mx);
    if (inv == 0.0f) {  // absmax 0, Inf or NaN: every a is 0 (or NaN, clamped to 0): the code of 0
      std::memset(codes + b0, m.is_signed ? 127 : 0, len);
      continue;
    }
#if defined(__AVX512F__)
    if (!m.is_signed) i = lowp::quant_block16<false, false>(q, x + b0, codes + b0, inv, len);
    else if (std::isfinite(inv)) i = lowp::quant_block16<true, true>(q, x + b0, codes + b0, inv, len);
    else i = lowp::quant_block16<true, false>(q, x + b0, codes + b0, inv, len);
#elif defined(__AVX2__)
    i = m.is_signed ? lowp::quant_block8<true>(q, x + b0, codes + b0, inv, len)
                    : lowp::quant_block8<false>(q, x + b0, codes + b0, inv, len);
#else
    i = 0;
#endif
    quant_block_scalar(m, x + b0 + i, codes + b0 + i, inv, len - i);
  }
}

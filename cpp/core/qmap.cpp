#include <cstring>
#include <stdexcept>
#include <vector>

#include "lowp.hpp"

namespace fastadapt {
namespace {

// The dynamic tree map (Dettmers et al.; bitsandbytes' create_dynamic_map
// with 7 exponent levels and 8 bits) in the closed form of lowp.hpp: level L
// holds the means of consecutive points of linspace(0.1, 1, n_L + 1) times
// 10^(L-6); the constants are float32 roundings of float64 quotients (+ - * /
// only, as fastadapt.reference.lowp computes them), the values float32
// operations on them.
QMap build(bool is_signed) {
  QMap m{};
  m.is_signed = is_signed;
  const double decade[kQLevels] = {1e6, 1e5, 1e4, 1e3, 1e2, 1e1, 1e0, 1e0};
  std::int32_t offset = 1;  // (index 0 is the value 0)
  for (int L = 0; L < kQLevels; ++L) {
    const int n = L == 7 ? 1 : (is_signed ? (1 << L) : (1 << (L + 1)));
    const double step = L == 7 ? 1.8 : 0.9 / n;
    m.dec[L] = static_cast<float>(decade[L]);
    m.invdec[L] = static_cast<float>(1.0 / decade[L]);
    m.step[L] = static_cast<float>(step);
    m.invstep[L] = static_cast<float>(1.0 / step);
    m.offset[L] = offset;
    m.last[L] = n - 1;
    offset += n;
  }
  if (offset != (is_signed ? 129 : 256)) throw std::logic_error("qmap: level sizes");
  auto value = [&](int L, int k) {
    const float kf = static_cast<float>(k) + 0.5f;
    return (0.1f + m.step[L] * kf) * m.invdec[L];
  };
  std::vector<float> mag(1, 0.0f);  // the magnitudes in order: 0, level 0, ..., level 7 (1)
  for (int L = 0; L < kQLevels; ++L)
    for (int k = 0; k <= m.last[L]; ++k) mag.push_back(value(L, k));
  for (std::size_t i = 1; i < mag.size(); ++i)
    if (!(mag[i] > mag[i - 1])) throw std::logic_error("qmap: magnitudes not increasing");
  if (mag.back() != 1.0f) throw std::logic_error("qmap: the largest magnitude is not 1");
  for (int L = 0; L < kQLevels; ++L) {
    const double below = L == 0 ? 0.0 : static_cast<double>(mag[m.offset[L] - 1]);
    m.thr[L] = static_cast<float>((below + static_cast<double>(mag[m.offset[L]])) / 2.0);
  }
  // The octave tables of the vector level search (lowp.hpp).
  for (int e = 0; e < 32; ++e) {
    const std::uint32_t lo = static_cast<std::uint32_t>(e + 96) << 23, hi = lo + (1u << 23);
    int base = 0, inside = 0;
    std::uint32_t t = 0x7f800000u;
    for (int L = 0; L < kQLevels; ++L) {
      std::uint32_t b;
      std::memcpy(&b, &m.thr[L], 4);
      if (b <= lo) ++base;
      else if (b < hi) ++inside, t = b;
    }
    if (inside > 1) throw std::logic_error("qmap: two thresholds in one octave");
    m.oct_base[e] = base;
    m.oct_thr[e] = static_cast<std::int32_t>(t);
  }
  // Octave 0 stands for every a below 2^-30 too: none may pass a threshold.
  if (m.oct_base[0] != 0 || m.oct_thr[0] != 0x7f800000) throw std::logic_error("qmap: a threshold below 2^-30");
  for (int c = 0; c <= kQLevels; ++c) {
    const int L = c - 1;
    const std::int32_t offset = c ? m.offset[L] : 0, last = c ? m.last[L] : 0;
    m.cnt_dec[c] = c ? m.dec[L] : 0.0f;  // (row 0: t = -0.5, k = 0)
    m.cnt_invstep[c] = c ? m.invstep[L] : 0.0f;
    m.cnt_last[c] = last;
    m.cnt_offset[c] = is_signed ? 127 + offset : offset;
    m.cnt_offset_neg[c] = is_signed ? 127 - (offset < 127 ? offset : 127) : 0;
    if (is_signed && offset + last > 127 && last != 0) throw std::logic_error("qmap: a level straddles code 0");
    // t is monotone in a, so k >= 0 for every a >= thr[L] if it is at thr[L].
    if (c && __builtin_roundevenf((m.thr[L] * m.dec[L] - 0.1f) * m.invstep[L] - 0.5f) < 0.0f)
      throw std::logic_error("qmap: a negative k past a threshold");
  }
  if (is_signed) {  // codes 0..126: -mag[127..1]; 127: 0; 128..255: mag[1..128]
    for (int c = 0; c < 256; ++c) m.value[c] = c < 127 ? -mag[127 - c] : mag[c - 127];
  } else {
    for (int c = 0; c < 256; ++c) m.value[c] = mag[c];
  }
  for (int c = 0; c < 256; ++c) {
    std::uint32_t b;
    std::memcpy(&b, &m.value[c], 4);
    for (int p = 0; p < 4; ++p) m.vplane[p][c] = static_cast<std::uint8_t>(b >> (8 * p));
  }
  return m;
}

}  // namespace

unsigned lowp_ext_supported() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();  // (may run before the constructors that would call it)
  if (!__builtin_cpu_supports("avx512bw")) return 0u;
  return kLowpBw | (__builtin_cpu_supports("avx512vbmi") ? kLowpVbmi : 0u);
#else
  return 0u;
#endif
}

std::atomic<unsigned> lowp_ext{lowp_ext_supported()};

const QMap& qmap(bool is_signed) {
  static const QMap s = build(true), u = build(false);
  return is_signed ? s : u;
}

}  // namespace fastadapt

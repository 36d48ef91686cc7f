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
  if (is_signed) {  // codes 0..126: -mag[127..1]; 127: 0; 128..255: mag[1..128]
    for (int c = 0; c < 256; ++c) m.value[c] = c < 127 ? -mag[127 - c] : mag[c - 127];
  } else {
    for (int c = 0; c < 256; ++c) m.value[c] = mag[c];
  }
  return m;
}

}  // namespace

const QMap& qmap(bool is_signed) {
  static const QMap s = build(true), u = build(false);
  return is_signed ? s : u;
}

}  // namespace fastadapt

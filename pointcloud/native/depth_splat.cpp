// vlx pointcloud: the CPU kernel of projection.depth_maps (no-grad path), fused.
//
// Why by hand: torch's eager kernel makes five passes over the B*V*N projected points (matmul,
// floor, index, brightness, scatter_reduce) and zeroes the whole output before scattering into
// it, by when the first images are out of cache again. No installed library has a fused
// orthographic splat of brightness-normalised depth (pytorch3d, which has a rasteriser, does
// not install on these machines). Here one (cloud, view) image at a time is zeroed, then its
// points are projected in cache-sized chunks and splatted while the image is in cache.
//
// Rounding follows the eager kernel, so the images are equal (tests check it): the projection
// is the FMA chain that torch's CPU matmul computes on FMA CPUs (a0*x, then fma with a1*y,
// a2*z, a3*1), the brightness z*k + c is rounded twice (the file is compiled with
// -ffp-contract=off), and k = (far - near) * (1 / range) as torch computes scalar / tensor,
// with far - near taken in double as Python does. On x86-64 the per-image function is cloned
// for CPUs with FMA (std::fma is then one instruction); elsewhere std::fma is the C library's
// exact fused multiply-add.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VLX_CLONES __attribute__((target_clones("fma", "default")))
#else
#define VLX_CLONES
#endif

namespace {

constexpr int64_t kChunk = 512;  // points per chunk: their indices and brightness stay in L1

template <typename T>
inline T proj(const T* a, T x, T y, T z) {
  return std::fma(a[3], T(1), std::fma(a[2], z, std::fma(a[1], y, a[0] * x)));
}

// One (cloud, view) image: px/py/pz the cloud's coordinates (N each), ac/ar/az the affine rows
// of column, row and depth, out the zeroed-here S*S image. Returns the number of points that
// fell outside the image (not drawn). Cloned for FMA CPUs: a lambda does not inherit the
// clones, so this is a function of its own.
template <typename T>
VLX_CLONES int64_t splat_image(const T* __restrict px, const T* __restrict py, const T* __restrict pz,
                               const T* __restrict ac, const T* __restrict ar, const T* __restrict az, int64_t N,
                               int64_t S, T near_, T span, T* __restrict out) {
  int32_t idx[kChunk];
  T br[kChunk];
  const T fS = static_cast<T>(S);
  T lo = std::numeric_limits<T>::infinity(), hi = -std::numeric_limits<T>::infinity();
  for (int64_t n = 0; n < N; ++n) {
    const T z = proj(az, px[n], py[n], pz[n]);
    lo = z < lo ? z : lo;
    hi = z > hi ? z : hi;
  }
  const T k = span * (T(1) / std::max(hi - lo, T(1e-6)));
  const T c = near_ - lo * k;
  std::fill(out, out + S * S, T(0));
  int64_t bad = 0;
  for (int64_t n0 = 0; n0 < N; n0 += kChunk) {
    const int64_t m = std::min(kChunk, N - n0);
    for (int64_t i = 0; i < m; ++i) {
      const T x = px[n0 + i], y = py[n0 + i], w = pz[n0 + i];
      const T col = proj(ac, x, y, w), row = proj(ar, x, y, w), z = proj(az, x, y, w);
      bad += !((col >= T(0)) & (col < fS) & (row >= T(0)) & (row < fS));
      // floor == truncation for the in-image (non-negative) coordinates
      idx[i] = static_cast<int32_t>(row) * static_cast<int32_t>(S) + static_cast<int32_t>(col);
      br[i] = z * k + c;
    }
    for (int64_t i = 0; i < m; ++i) {
      const int32_t j = idx[i];
      if (static_cast<uint32_t>(j) < static_cast<uint32_t>(S * S) && br[i] > out[j]) out[j] = br[i];
    }
  }
  return bad;
}

// pts (B, 3, N) coordinate-major; A (Bm, 3, V, 4); img (B, V, S*S), images in parallel.
template <typename T>
int64_t splat(const T* pts, const T* A, bool per_sample, int64_t B, int64_t V, int64_t N, int64_t S, T near_, T span,
              T* img) {
  std::atomic<int64_t> outside{0};
  at::parallel_for(0, B * V, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bv = begin; bv < end; ++bv) {
      const int64_t b = bv / V, v = bv % V;
      const T* a = A + (per_sample ? b : 0) * 3 * V * 4;
      const T* px = pts + b * 3 * N;
      const int64_t bad = splat_image(px, px + N, px + 2 * N, a + v * 4, a + (V + v) * 4, a + (2 * V + v) * 4, N, S,
                                      near_, span, img + bv * S * S);
      if (bad) outside += bad;
    }
  });
  return outside.load();
}

}  // namespace

// pts (B, 3, N), A (1|B, 3, V, 4): contiguous CPU float32/float64 of one dtype. Returns the
// (B, V, S*S) images, background 0; raises if a point falls outside its image.
at::Tensor depth_splat(const at::Tensor& pts, const at::Tensor& A, int64_t S, double near_, double span) {
  TORCH_CHECK(pts.device().is_cpu() && A.device().is_cpu(), "depth_splat: CPU tensors only");
  TORCH_CHECK(pts.dim() == 3 && pts.size(1) == 3, "depth_splat: points must be (B, 3, N)");
  TORCH_CHECK(A.dim() == 4 && A.size(1) == 3 && A.size(3) == 4, "depth_splat: A must be (1|B, 3, V, 4)");
  TORCH_CHECK(pts.scalar_type() == A.scalar_type(), "depth_splat: points and A differ in dtype");
  TORCH_CHECK(S > 0 && S * S < (int64_t(1) << 31), "depth_splat: image size out of range");
  const int64_t B = pts.size(0), N = pts.size(2), V = A.size(2);
  const bool per_sample = A.size(0) != 1;
  TORCH_CHECK(!per_sample || A.size(0) == B, "depth_splat: A's batch must be 1 or B");
  auto p = pts.contiguous();
  auto a = A.contiguous();
  auto img = at::empty({B, V, S * S}, pts.options());
  int64_t outside = 0;
  AT_DISPATCH_FLOATING_TYPES(pts.scalar_type(), "depth_splat", [&] {
    outside = splat<scalar_t>(p.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), per_sample, B, V, N, S,
                              static_cast<scalar_t>(near_), static_cast<scalar_t>(span), img.data_ptr<scalar_t>());
  });
  TORCH_CHECK(outside == 0, "depth_splat: ", outside, " projected points fell outside their image");
  return img;
}

// A torch operator, not a Python module: no pybind11 or Python headers to build against.
TORCH_LIBRARY(vlx_pointcloud, m) { m.def("depth_splat(Tensor pts, Tensor A, int S, float near, float span) -> Tensor"); }
TORCH_LIBRARY_IMPL(vlx_pointcloud, CPU, m) { m.impl("depth_splat", &depth_splat); }

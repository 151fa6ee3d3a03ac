// Tensor core: dtypes and conversions, storage, views, copies, creation, random, printing, .npy.
#include <cstdio>
#include <filesystem>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#include "helpers.hpp"
#include "torchlet/tensor/random.hpp"

using namespace torchlet;
using testing::check_close;
using testing::check_equal;
using testing::fixture;

TEST_CASE("dtype names and sizes are PyTorch's") {
  CHECK(dtype_name(kFloat32) == "float32");
  CHECK(dtype_name(kBFloat16) == "bfloat16");
  CHECK(element_size(kFloat16) == 2);
  CHECK(element_size(kInt64) == 8);
  CHECK(element_size(kBool) == 1);
  CHECK(element_size(DType::Float8_e5m2) == 1);
  CHECK(dtype_from_name("torch.half") == kFloat16);
  CHECK(dtype_from_name("long") == kInt64);
  CHECK_THROWS_AS(dtype_from_name("complex64"), DTypeError);
}

TEST_CASE("type promotion follows PyTorch's table") {
  CHECK(promote_types(kUInt8, kInt8) == kInt16);
  CHECK(promote_types(kInt32, kInt64) == kInt64);
  CHECK(promote_types(kBool, kUInt8) == kUInt8);
  CHECK(promote_types(kInt64, kFloat16) == kFloat16);
  CHECK(promote_types(kFloat16, kBFloat16) == kFloat32);
  CHECK(promote_types(kFloat32, kFloat64) == kFloat64);
  CHECK(promote_types(kBFloat16, kFloat32) == kFloat32);
  CHECK_THROWS_AS(promote_types(DType::UInt16, kInt32), DTypeError);
}

TEST_CASE("float16 and bfloat16 round to nearest even, bit for bit as PyTorch") {
  // fixture: float32 inputs (halfway cases, subnormals, overflow, NaN) and the bits PyTorch produced
  const Tensor x = fixture("convert_input_f32");
  const Tensor h = x.to(kFloat16), b = x.to(kBFloat16);
  const Tensor h_bits = fixture("convert_f16_bits"), b_bits = fixture("convert_bf16_bits");
  REQUIRE(h_bits.numel() == x.numel());
  const uint16_t* hp = static_cast<const uint16_t*>(h.data_ptr());
  const uint16_t* bp = static_cast<const uint16_t*>(b.data_ptr());
  int bad_h = 0, bad_b = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    bad_h += hp[i] != static_cast<uint16_t>(h_bits.data<int32_t>()[i]);
    // for NaN, PyTorch's scalar path writes 0x7fc0 and its AVX2 path 0xffff: any NaN is right
    const bool nan_in = std::isnan(x.data<float>()[i]);
    bad_b += nan_in ? (bp[i] & 0x7f80) != 0x7f80 || (bp[i] & 0x7f) == 0
                    : bp[i] != static_cast<uint16_t>(b_bits.data<int32_t>()[i]);
  }
  CHECK(bad_h == 0);
  CHECK(bad_b == 0);
  // and back to float32 exactly
  check_equal(h.to(kFloat32), fixture("convert_f16_back"));
  check_equal(b.to(kFloat32), fixture("convert_bf16_back"));
}

TEST_CASE("float to integer conversion truncates toward zero as PyTorch") {
  const Tensor x = fixture("convert_int_input");  // float64 values in range of every target
  check_equal(x.to(kInt64), fixture("convert_to_int64"));
  check_equal(x.to(kInt32), fixture("convert_to_int32"));
  check_equal(x.to(kInt8), fixture("convert_to_int8"));
  check_equal(x.to(kUInt8), fixture("convert_to_uint8"));
  check_equal(x.to(kBool), fixture("convert_to_bool"));
  CHECK(tensor({-2.7f}).to(kInt64).item<int64_t>() == -2);
  CHECK(tensor({300}).to(kUInt8).item<int64_t>() == 44);  // wraps like PyTorch
}

TEST_CASE("storage: owned memory is 64-byte aligned; borrowed memory stays alive while used") {
  Tensor t = empty({3, 5}, kFloat32);
  CHECK(reinterpret_cast<uintptr_t>(t.storage().data()) % 64 == 0);
  CHECK_FALSE(t.storage().is_borrowed());

  // a memory-mapped file lent to a tensor: the mapping is released only when the last tensor goes
  const std::string path = (std::filesystem::temp_directory_path() / "torchlet_test_mmap.bin").string();
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    const float vals[4] = {1.5f, -2.f, 3.25f, 8.f};
    std::fwrite(vals, sizeof vals, 1, f);
    std::fclose(f);
  }
  std::weak_ptr<void> watch;
  Tensor view;
  {
    const int fd = ::open(path.c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    void* p = ::mmap(nullptr, 16, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    REQUIRE(p != MAP_FAILED);
    std::shared_ptr<void> mapping(p, [](void* q) { ::munmap(q, 16); });
    watch = mapping;
    Tensor all = from_blob(p, {4}, kFloat32, {}, mapping);
    CHECK(all.storage().is_borrowed());
    view = all.slice(0, 1, 3);
  }
  CHECK_FALSE(watch.expired());  // `view` keeps the mapping alive
  CHECK(view[0].item<float>() == -2.f);
  CHECK(view[1].item<float>() == 3.25f);
  view = Tensor();
  CHECK(watch.expired());
  std::filesystem::remove(path);
}

TEST_CASE("views share storage and compute PyTorch's strides") {
  Tensor a = arange(24).view({2, 3, 4});
  CHECK(a.strides() == Shape{12, 4, 1});
  Tensor p = a.permute({2, 0, 1});
  CHECK(p.sizes() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK_FALSE(p.is_contiguous());
  CHECK(p.storage().is_same(a.storage()));
  CHECK(a.transpose(0, 2).sizes() == Shape{4, 3, 2});
  CHECK(a.select(1, 2).sizes() == Shape{2, 4});
  CHECK(a.select(1, -1)[1][3].item<int64_t>() == 23);
  CHECK(a.narrow(2, 1, 2).storage_offset() == 1);
  CHECK(a.slice(2, 1, std::nullopt, 2).strides() == Shape{12, 4, 2});
  CHECK(a.slice(0, -1).sizes() == Shape{1, 3, 4});
  CHECK(a.slice(2, 10, 20).sizes() == Shape{2, 3, 0});  // clamped like Python
  CHECK(a.unsqueeze(1).sizes() == Shape{2, 1, 3, 4});
  CHECK(a.unsqueeze(-1).strides() == Shape{12, 4, 1, 1});
  CHECK(a.unsqueeze(1).squeeze(1).sizes() == Shape{2, 3, 4});
  CHECK(ones({1, 3, 1}).squeeze().sizes() == Shape{3});
  CHECK(a.flatten(1).sizes() == Shape{2, 12});
  CHECK(a.flatten().sizes() == Shape{24});
  CHECK(a.view({-1, 6}).sizes() == Shape{4, 6});
  CHECK(tensor({1.f, 2.f}).t().sizes() == Shape{2});

  Tensor e = tensor({1, 2, 3}).view({3, 1}).expand({2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(e[1][2][3].item<int>() == 3);

  // a view of a permuted tensor where strides allow it, as PyTorch's computeStride
  Tensor q = arange(24).view({4, 6}).t();  // [6, 4] with strides [1, 6]
  CHECK(q.view({2, 3, 4}).strides() == Shape{3, 1, 6});
  CHECK_THROWS_AS(q.view({24}), ShapeError);
  Tensor r = q.reshape({24});
  CHECK(r.is_contiguous());
  CHECK(r[1].item<int64_t>() == 6);

  auto parts = arange(10).split(4);
  REQUIRE(parts.size() == 3);
  CHECK(parts[2].sizes() == Shape{2});
  CHECK(parts[2][0].item<int64_t>() == 8);
  auto chunks = arange(10).chunk(3);
  REQUIRE(chunks.size() == 3);
  CHECK(chunks[0].numel() == 4);
  CHECK(chunks[2].numel() == 2);
  auto sized = arange(10).split(Shape{3, 7});
  CHECK(sized[1][0].item<int64_t>() == 3);
  CHECK(a.unbind(1).size() == 3);
}

TEST_CASE("views raise one-line errors on bad arguments") {
  Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(a.view({4, 2}), "[view] shape [4, 2] is invalid for input of size 6", ShapeError);
  CHECK_THROWS_AS(a.select(2, 0), IndexError);
  CHECK_THROWS_WITH_AS(a.select(1, 3), "[select] index 3 is out of bounds for dimension 1 with size 3", IndexError);
  CHECK_THROWS_AS(a.permute({0, 0}), ValueError);
  CHECK_THROWS_AS(a.expand({3, 3}), ShapeError);
  CHECK_THROWS_AS(a.narrow(0, 1, 2), IndexError);
  CHECK_THROWS_AS(a.view({-1, -1}), ValueError);
  CHECK_THROWS_AS(zeros({2, 2, 2}).t(), ShapeError);
  CHECK_THROWS_AS(Tensor().sizes(), ValueError);
  CHECK_THROWS_AS(a.as_strided({3, 3}, {3, 1}), IndexError);  // past the end of the storage
}

TEST_CASE("copy_ broadcasts and converts; writes through views") {
  Tensor a = zeros({2, 3}, kFloat64);
  a.copy_(tensor({1, 2, 3}));  // int32 row broadcast over rows
  check_close(a, tensor({{1., 2., 3.}, {1., 2., 3.}}));
  a.select(1, 0).fill_(7.5);
  CHECK(a[1][0].item<double>() == 7.5);
  Tensor col = a.t().contiguous();
  CHECK(col.is_contiguous());
  check_close(col, tensor({{7.5, 7.5}, {2., 2.}, {3., 3.}}));
  CHECK_THROWS_AS(a.copy_(zeros({4})), ShapeError);

  // overlapping source and destination in the same storage
  Tensor s = arange(6, 0, -1).to(kFloat32);  // 6 5 4 3 2 1
  s.slice(0, 1).copy_(s.slice(0, 0, 5));
  check_close(s, tensor({6.f, 6.f, 5.f, 4.f, 3.f, 2.f}));

  Tensor c = a.clone();
  CHECK_FALSE(c.storage().is_same(a.storage()));
  CHECK(a.to(kFloat64).is_same(a));
  CHECK_FALSE(a.to(kFloat64, true).is_same(a));
  Tensor big = arange(100000).to(kFloat32).view({100, 1000}).t();  // large, strided: the threaded path
  Tensor bc = big.contiguous();
  CHECK(bc[999][99].item<float>() == 99999.f);
  CHECK(bc[3][2].item<float>() == 2003.f);
}

TEST_CASE("creation functions") {
  CHECK(zeros({2, 2}).dtype() == kFloat32);
  CHECK(full({2}, 3).dtype() == kInt64);
  CHECK(full({2}, 3.5).dtype() == kFloat32);
  CHECK(full({2}, true).dtype() == kBool);
  check_equal(arange(5), fixture("arange_5"));
  check_equal(arange(1.0, 2.0, 0.25), fixture("arange_1_2_025"));
  check_equal(arange(10, 0, -3), fixture("arange_10_0_m3"));
  check_close(linspace(-1, 1, 7), fixture("linspace_m1_1_7"), 0, 0);
  // PyTorch's AVX2 loop restarts its count every 4 doubles, so float64 may differ in the last bit
  check_close(linspace(0, 1, 10, kFloat64), fixture("linspace_0_1_10_f64"), 1e-15, 0);
  check_equal(eye(3, 4), fixture("eye_3_4"));
  CHECK(scalar_tensor(2.5).dim() == 0);
  CHECK(scalar_tensor(2.5).item<double>() == 2.5);
  CHECK(tensor({{1, 2}, {3, 4}}).sizes() == Shape{2, 2});
  CHECK(tensor(std::vector<bool>{true, false}).dtype() == kBool);
  CHECK_THROWS_AS(arange(0, 5, 0), ValueError);
  CHECK_THROWS_AS(empty({-1}), ValueError);
  CHECK_THROWS_AS(tensor(std::vector<float>{1, 2, 3}, {2, 2}), ShapeError);
  std::vector<float> buf{1, 2, 3, 4, 5, 6};
  Tensor blob = from_blob(buf.data(), {2, 3});
  buf[4] = 50;
  CHECK(blob[1][1].item<float>() == 50.f);
}

TEST_CASE("cuda tensors fail with a clear error in a CPU-only build") {
  CHECK_THROWS_WITH_AS(empty({2}, Device("cuda:0")),
                       "[allocator] device cuda:0 is not available: this program was built without torchlet's CUDA "
                       "backend",
                       DeviceError);
  CHECK_THROWS_AS(zeros({2}).to(Device("cuda")), DeviceError);
  CHECK(Device("cuda:3").index == 3);
  CHECK(Device("cuda:3").str() == "cuda:3");
  CHECK_THROWS_AS(Device("gpu0"), ValueError);
}

TEST_CASE("random numbers are reproducible from a seed and have the right distribution") {
  Generator g1(42), g2(42);
  check_equal(rand({1000}, kFloat32, g1), rand({1000}, kFloat32, g2));
  Generator g(7);
  const auto u = testing::values(rand({20000}, kFloat64, g));
  double mean = 0, lo = 1, hi = 0;
  for (double v : u) { mean += v; lo = std::min(lo, v); hi = std::max(hi, v); }
  mean /= u.size();
  CHECK(mean == doctest::Approx(0.5).epsilon(0.02));
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  const auto z = testing::values(randn({20000}, kFloat64, g));
  double m = 0, v2 = 0;
  for (double v : z) m += v;
  m /= z.size();
  for (double v : z) v2 += (v - m) * (v - m);
  v2 /= z.size();
  CHECK(std::fabs(m) < 0.03);
  CHECK(v2 == doctest::Approx(1.0).epsilon(0.03));
  const auto ri = testing::values(randint(-3, 4, {5000}, kInt64, g));
  CHECK(*std::min_element(ri.begin(), ri.end()) == -3);
  CHECK(*std::max_element(ri.begin(), ri.end()) == 3);
  // a saved state resumes the exact stream
  const std::string st = g.state();
  const Tensor next1 = randn({5}, kFloat64, g);
  g.set_state(st);
  check_equal(randn({5}, kFloat64, g), next1);
  const auto perm = testing::values(randperm(50, g));
  std::vector<double> sorted(perm);
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 50; ++i) CHECK(sorted[i] == i);
}

TEST_CASE("printing matches PyTorch's text") {
  CHECK(to_string(tensor({{1.f, 2.f}, {3.f, 4.f}})) == "tensor([[1., 2.],\n        [3., 4.]])");
  CHECK(to_string(tensor({0.5, -1.25})) == "tensor([ 0.5000, -1.2500], dtype=torch.float64)");
  CHECK(to_string(tensor({1e-5f, 1.f})) == "tensor([1.0000e-05, 1.0000e+00])");
  CHECK(to_string(arange(3)) == "tensor([0, 1, 2])");
  CHECK(to_string(tensor({1, 2})) == "tensor([1, 2], dtype=torch.int32)");
  CHECK(to_string(tensor(std::vector<bool>{true, false})) == "tensor([ True, False])");
  CHECK(to_string(scalar_tensor(3.0)) == "tensor(3.)");
  CHECK(to_string(zeros({0, 3})) == "tensor([], size=(0, 3))");
  CHECK(to_string(tensor({NAN, 1.5f, INFINITY})) == "tensor([   nan, 1.5000,    inf])");
  // long and summarised outputs, compared with PyTorch's own text
  for (const char* name : {"print_arange_30_f32", "print_big_2000", "print_3d"}) {
    const Tensor t = fixture(name);
    std::FILE* f = std::fopen((std::string(TORCHLET_FIXTURES) + "/" + name + ".txt").c_str(), "rb");
    REQUIRE(f);
    std::string expected;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) expected.append(buf, n);
    std::fclose(f);
    CHECK_MESSAGE(to_string(t) == expected, name);
  }
}

TEST_CASE(".npy round trip for every supported dtype; clear errors on bad files") {
  const auto dir = std::filesystem::temp_directory_path();
  for (DType t : {kFloat32, kFloat64, kInt64, kInt32, kUInt8, kBool, kFloat16}) {
    const Tensor x = arange(12).view({3, 4}).t().to(t);  // non-contiguous source
    const std::string path = (dir / "torchlet_rt.npy").string();
    save_npy(path, x);
    const Tensor y = load_npy(path);
    CHECK(y.dtype() == t);
    check_equal(y, x.contiguous());
    std::filesystem::remove(path);
  }
  // files written by numpy: Fortran order and a 0-dim array
  check_equal(fixture("npy_fortran"), arange(6).view({2, 3}).to(kFloat64));
  CHECK(fixture("npy_scalar").dim() == 0);
  CHECK_THROWS_AS(load_npy("/nonexistent/x.npy"), IOError);
  const std::string bad = (dir / "torchlet_bad.npy").string();
  std::FILE* f = std::fopen(bad.c_str(), "wb");
  std::fputs("not numpy at all", f);
  std::fclose(f);
  CHECK_THROWS_WITH_AS(load_npy(bad), ("[load_npy] " + bad + ": not a .npy file (bad magic)").c_str(), IOError);
  std::filesystem::remove(bad);
}

TEST_CASE("OMP_NUM_THREADS sets the default thread count as in PyTorch: its first entry, ignored unless positive") {
  const char* saved = std::getenv("OMP_NUM_THREADS");
  const std::string keep = saved ? saved : "";
  ::setenv("OMP_NUM_THREADS", "3", 1);
  CHECK(detail::omp_num_threads_env() == 3);
  ::setenv("OMP_NUM_THREADS", "2,1", 1);  // nested levels: the first is the outer team
  CHECK(detail::omp_num_threads_env() == 2);
  for (const char* bad : {"0", "-4", "four", "", "3x"}) {
    ::setenv("OMP_NUM_THREADS", bad, 1);
    CHECK_MESSAGE(detail::omp_num_threads_env() == 0, bad);
  }
  ::unsetenv("OMP_NUM_THREADS");
  CHECK(detail::omp_num_threads_env() == 0);
  if (saved) ::setenv("OMP_NUM_THREADS", keep.c_str(), 1);
  CHECK(get_num_threads() >= 1);
}

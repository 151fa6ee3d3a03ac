// The data pipeline: IDX (Fashion-MNIST / MNIST), CIFAR-10 binary, image folders, transforms against
// torchvision / torch.nn.functional, and the DataLoader's determinism, prefetching and error handling.
// Fixtures: tests/fixtures/gen/data.py.
#define TORCHLET_STB_IMPLEMENTATION  // this test program compiles stb_image's implementation (see image_folder.hpp)
#include "torchlet/data.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "helpers.hpp"

using namespace torchlet;
using namespace torchlet::data;
using testing::check_close;
using testing::check_equal;
using testing::fixture;
namespace fs = std::filesystem;

namespace {
std::string fixture_path(const std::string& rel) { return std::string(TORCHLET_FIXTURES) + "/" + rel; }

// A fresh temporary folder, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("torchlet_test_data_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const fs::path p = path / name;
    fs::create_directories(p.parent_path());
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    return p.string();
  }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The message of the E that f() raises (a failed check when it raises nothing or something else).
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL_CHECK("expected another error type, got: ", e.what());
    return "";
  }
  FAIL_CHECK("expected an error, got none");
  return "";
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
#define CHECK_CONTAINS(s, part) CHECK_MESSAGE(contains(s, part), "message: '", s, "' lacks '", part, "'")

// An IDX header + data for uint8 [dims...].
std::vector<uint8_t> idx_u8(std::vector<uint32_t> dims, uint8_t fill = 7, int extra = 0) {
  std::vector<uint8_t> b{0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    n *= d;
  }
  b.insert(b.end(), static_cast<size_t>(static_cast<int64_t>(n) + extra), fill);
  return b;
}
}  // namespace

TEST_SUITE("data") {
// ---------------------------------------------------------------------------------------------- IDX
TEST_CASE("read_idx: element types big-endian on disk, as numpy wrote them") {
  for (const char* name : {"f32", "i16", "f64", "i32"}) {
    INFO(name);
    check_equal(read_idx(fixture_path(std::string("df_idx_") + name + ".idx")), fixture(std::string("df_idx_") + name));
  }
}

TEST_CASE("mnist / fashion_mnist from a folder: gzip train files and plain test files") {
  const std::string root = fixture_path("df_mnist");
  TensorDataset train = mnist(root, true);
  CHECK(train.size() == 6);
  check_equal(train.images(), fixture("df_mnist_train_x"));
  check_equal(train.labels(), fixture("df_mnist_train_y"));
  TensorDataset test = fashion_mnist(root, false);
  check_equal(test.images(), fixture("df_mnist_test_x"));
  check_equal(test.labels(), fixture("df_mnist_test_y"));
  CHECK(test.classes().size() == 10);
  CHECK(test.classes()[9] == "Ankle boot");
  Example ex = train.get(2);
  CHECK(ex.image.sizes() == Shape{1, 28, 28});
  CHECK(ex.label == 9);
  check_equal(ex.image[0], fixture("df_mnist_train_x")[2]);
  CHECK(train.label_counts() == std::vector<int64_t>{1, 1, 0, 1, 0, 2, 0, 0, 0, 1});
}

TEST_CASE("the real Fashion-MNIST files of Debian's dataset-fashion-mnist, checked against Python's reading") {
  if (!fs::exists(kFashionMnistRoot) || !fs::exists(fixture_path("df_fmnist_stats.npy"))) {
    MESSAGE("skipped: ", kFashionMnistRoot, " is not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  const Tensor stats = fixture("df_fmnist_stats");
  const int64_t* s = stats.data<int64_t>();
  TensorDataset train = fashion_mnist();
  CHECK(train.images().sizes() == Shape{60000, 28, 28});
  CHECK(train.images().dtype() == kUInt8);
  CHECK(train.labels().dtype() == kInt64);
  CHECK(train.size() == s[0]);
  check_equal(train.labels().narrow(0, 0, 32), fixture("df_fmnist_train_labels32"));
  check_equal(train.images()[0], fixture("df_fmnist_train_img0"));
  int64_t sum = 0;
  const uint8_t* p = train.images().data<uint8_t>();
  for (int64_t i = 0; i < train.images().numel(); ++i) sum += p[i];
  CHECK(sum == s[2]);
  const auto counts = train.label_counts();
  REQUIRE(counts.size() == 10);
  for (int c = 0; c < 10; ++c) CHECK(counts[static_cast<size_t>(c)] == s[4 + c]);

  TensorDataset test = fashion_mnist(kFashionMnistRoot, false);
  CHECK(test.images().sizes() == Shape{10000, 28, 28});
  CHECK(test.size() == s[1]);
  check_equal(test.labels().narrow(0, 0, 32), fixture("df_fmnist_test_labels32"));
  check_equal(test.images()[9999], fixture("df_fmnist_test_img_last"));
  sum = 0;
  p = test.images().data<uint8_t>();
  for (int64_t i = 0; i < test.images().numel(); ++i) sum += p[i];
  CHECK(sum == s[3]);
}

TEST_CASE("read_idx errors: one line naming the file") {
  TempDir tmp;
  {
    auto bytes = idx_u8({2, 3});
    bytes[0] = 0x1f;
    const std::string f = tmp.file("bad_magic", bytes);
    const std::string m = error_of<IOError>([&] { read_idx(f); });
    CHECK_CONTAINS(m, f);
    CHECK_CONTAINS(m, "magic number 0x1f000802");
  }
  {
    auto bytes = idx_u8({2, 3});
    bytes[2] = 0x0A;  // no such type
    const std::string m = error_of<IOError>([&] { read_idx(tmp.file("bad_type", bytes)); });
    CHECK_CONTAINS(m, "not an IDX file");
  }
  {
    const std::string f = tmp.file("zero_dims", {0, 0, 8, 0});
    CHECK_CONTAINS(error_of<IOError>([&] { read_idx(f); }), "0 dimensions, expected 1 to 8");
  }
  {
    const std::string f = tmp.file("short_header", {0, 0, 8, 3, 0, 0, 0, 2});
    CHECK_CONTAINS(error_of<IOError>([&] { read_idx(f); }), "truncated: the header's 3 dimension sizes");
  }
  {
    const std::string f = tmp.file("truncated", idx_u8({4, 5}, 1, -3));
    const std::string m = error_of<IOError>([&] { read_idx(f); });
    CHECK_CONTAINS(m, f);
    CHECK_CONTAINS(m, "truncated: data of shape [4, 5] (uint8) needs 20 bytes");
    CHECK_CONTAINS(m, "has only 17");
  }
  {
    const std::string f = tmp.file("trailing", idx_u8({4, 5}, 1, 2));
    CHECK_CONTAINS(error_of<IOError>([&] { read_idx(f); }), "trailing data");
  }
  {
    // a header claiming 2^32-1 x 2^32-1 elements fails without trying to allocate them
    const std::string f = tmp.file("huge", {0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2});
    CHECK_CONTAINS(error_of<IOError>([&] { read_idx(f); }), "more than 2^40 elements");
    const std::string g = tmp.file("big_claim", {0, 0, 8, 1, 0x40, 0, 0, 0, 1, 2, 3});
    CHECK_CONTAINS(error_of<IOError>([&] { read_idx(g); }), "has only 3");
  }
  {
    auto gz = read_bytes(fixture_path("df_mnist/train-images-idx3-ubyte.gz"));
    gz.resize(gz.size() - 200);  // cut the compressed stream
    const std::string f = tmp.file("cut.gz", gz);
    const std::string m = error_of<IOError>([&] { read_idx(f); });
    CHECK_CONTAINS(m, f);
    CHECK((contains(m, "corrupt or truncated compressed data") || contains(m, "truncated")));
  }
  CHECK_CONTAINS(error_of<IOError>([&] { read_idx((tmp.path / "nope").string()); }), "no such file");
  CHECK_CONTAINS(error_of<IOError>([&] { read_idx(tmp.path.string()); }), "not a regular file");
}

TEST_CASE("mnist errors: wrong file kinds, count mismatch, missing files with the Debian package named") {
  TempDir tmp;
  const std::string images = tmp.file("images", idx_u8({3, 2, 2}));
  const std::string labels = tmp.file("labels", idx_u8({2}, 1));
  std::string m = error_of<IOError>([&] { mnist_from_files(images, labels); });
  CHECK_CONTAINS(m, "holds 2 labels but");
  CHECK_CONTAINS(m, images);
  m = error_of<IOError>([&] { mnist_from_files(labels, images); });
  CHECK_CONTAINS(m, "expected uint8 images [N,H,W] (magic 0x00000803), got uint8 [2]");
  m = error_of<IOError>([&] { fashion_mnist(tmp.path.string()); });
  CHECK_CONTAINS(m, (tmp.path / "train-images-idx3-ubyte.gz").string());
  CHECK_CONTAINS(m, "apt-get install dataset-fashion-mnist");
  m = error_of<IOError>([&] { mnist(tmp.path.string(), false); });
  CHECK_CONTAINS(m, "t10k-images-idx3-ubyte");
}

// ---------------------------------------------------------------------------------------------- TensorDataset
TEST_CASE("TensorDataset: class filter with and without remapping, subsets") {
  TensorDataset d = mnist(fixture_path("df_mnist"), true);  // labels 3 0 9 5 5 1
  TensorDataset low = d.filter_classes({0, 1, 2, 3, 4});
  CHECK(low.size() == 3);
  check_equal(low.labels(), tensor<int64_t>({3, 0, 1}));
  check_equal(low.images()[2], d.images()[5]);
  TensorDataset high = d.filter_classes({5, 6, 7, 8, 9});
  check_equal(high.labels(), tensor<int64_t>({4, 0, 0}));
  CHECK(high.classes() == std::vector<std::string>{"5", "6", "7", "8", "9"});
  TensorDataset kept = d.filter_classes({9, 5}, /*remap=*/false);
  check_equal(kept.labels(), tensor<int64_t>({9, 5, 5}));
  CHECK(kept.classes().size() == 10);
  TensorDataset first = d.subset_first(4);
  check_equal(first.labels(), tensor<int64_t>({3, 0, 9, 5}));
  CHECK(d.subset_first(100).size() == 6);
  check_equal(d.subset_every(2).labels(), tensor<int64_t>({3, 9, 5}));
  check_equal(d.subset_every(4, 1).labels(), tensor<int64_t>({0, 1}));
  check_equal(d.subset_every(2, 1).images()[1], d.images()[3]);
  CHECK_CONTAINS(error_of<ValueError>([&] { d.filter_classes({1, 1}); }), "listed twice");
  CHECK_CONTAINS(error_of<ValueError>([&] { d.subset_every(0); }), "k >= 1");
  CHECK_CONTAINS(error_of<IndexError>([&] { d.get(6); }), "index 6 is out of range for a dataset of 6 samples");
  CHECK_CONTAINS(error_of<ShapeError>([&] { TensorDataset(zeros({3, 2, 2}, kUInt8), zeros({2}, kInt64)); }),
                 "expected labels [3]");
}

TEST_CASE("Subset: any dataset's samples by index or by class, labels from label() without decoding") {
  auto d = std::make_shared<const TensorDataset>(mnist(fixture_path("df_mnist"), true));  // labels 3 0 9 5 5 1
  // what TensorDataset::filter_classes gives, without copying images
  Subset high = Subset::of_classes(d, {5, 6, 7, 8, 9});
  REQUIRE(high.size() == 3);
  CHECK(high.indices() == std::vector<int64_t>{2, 3, 4});
  CHECK(high.classes() == std::vector<std::string>{"5", "6", "7", "8", "9"});
  const TensorDataset copied = d->filter_classes({5, 6, 7, 8, 9});
  for (int64_t i = 0; i < high.size(); ++i) {
    CHECK(high.label(i) == copied.label(i));
    CHECK(high.get(i).label == copied.get(i).label);
    check_equal(high.get(i).image, copied.get(i).image);
  }
  Subset kept = Subset::of_classes(d, {9, 5}, /*remap=*/false);
  CHECK(kept.indices() == std::vector<int64_t>{2, 3, 4});
  CHECK(kept.label(0) == 9);
  CHECK(kept.classes().size() == 10);
  Subset reordered = Subset::of_classes(d, {9, 5});  // keep order decides the new labels
  CHECK(reordered.label(0) == 0);
  CHECK(reordered.label(1) == 1);
  // first(n) of a subset, and subsets of subsets
  CHECK(high.first(2).indices() == std::vector<int64_t>{2, 3});
  CHECK(high.first(100).size() == 3);
  auto shared_high = std::make_shared<const Subset>(high);
  Subset nested = Subset::of_classes(shared_high, {0});  // class 5 of the first subset
  CHECK(nested.size() == 2);
  CHECK(nested.label(1) == 0);
  check_equal(nested.get(1).image, d->get(4).image);
  CHECK(Subset(d, {5, 0}).label(0) == 1);
  // a DataLoader reads it like any dataset
  Compose to_tensor;
  to_tensor.add(transforms::ToTensor());
  DataLoader loader(std::make_shared<const Subset>(high), to_tensor, {.batch_size = 8});
  auto batch = DataLoader::Epoch(loader, 0, 0).next();
  REQUIRE(batch.has_value());
  check_equal(batch->labels, tensor<int64_t>({4, 0, 0}));
  CHECK_CONTAINS(error_of<ValueError>([&] { Subset::of_classes(d, {1, 1}); }), "class 1 is listed twice");
  CHECK_CONTAINS(error_of<IndexError>([&] { Subset(d, {6}); }), "index 6 is out of range for a dataset of 6");
  CHECK_CONTAINS(error_of<IndexError>([&] { high.get(3); }), "index 3 is out of range for a subset of 3");
}

// ---------------------------------------------------------------------------------------------- CIFAR-10
TEST_CASE("cifar10: binary batches, train = data_batch_1..5, test = test_batch") {
  TensorDataset train = cifar10(fixture_path("df_cifar"), true);
  CHECK(train.images().sizes() == Shape{10, 3, 32, 32});
  check_equal(train.images(), fixture("df_cifar_train_x"));
  check_equal(train.labels(), fixture("df_cifar_train_y"));
  TensorDataset test = cifar10(fixture_path("df_cifar"), false);
  check_equal(test.images(), fixture("df_cifar_test_x"));
  check_equal(test.labels(), fixture("df_cifar_test_y"));
  CHECK(test.classes()[9] == "truck");
  CHECK(test.get(1).image.sizes() == Shape{3, 32, 32});
  CHECK(test.get(0).label == 9);
}

TEST_CASE("cifar10 errors") {
  TempDir tmp;
  auto rec = read_bytes(fixture_path("df_cifar/test_batch.bin"));
  auto cut = rec;
  cut.resize(3073 + 100);
  const std::string f = tmp.file("test_batch.bin", cut);
  std::string m = error_of<IOError>([&] { cifar10(tmp.path.string(), false); });
  CHECK_CONTAINS(m, f);
  CHECK_CONTAINS(m, "3173 bytes is not a whole number of 3073-byte records");
  rec[3073] = 10;
  const std::string g = tmp.file("bad_label.bin", rec);
  m = error_of<IOError>([&] { read_cifar10_batches({g}); });
  CHECK_CONTAINS(m, "record 1 (offset 3073) has label 10, expected 0..9");
  m = error_of<IOError>([&] { cifar10(tmp.path.string(), true); });
  CHECK_CONTAINS(m, "missing");
  CHECK_CONTAINS(m, "data_batch_1.bin");
}

// ---------------------------------------------------------------------------------------------- images
TEST_CASE("ImageFolder: sorted classes, recursive sorted files, RGB like PIL's convert('RGB')") {
  ImageFolder ds(fixture_path("df_images"));
  CHECK(ds.classes() == std::vector<std::string>{"bird", "cat"});
  CHECK(ds.class_to_idx().at("cat") == 1);
  REQUIRE(ds.size() == 4);  // notes.txt is not an image
  const auto& s = ds.samples();
  CHECK(fs::path(s[0].first).filename() == "x.jpg");
  CHECK(fs::path(s[1].first).filename() == "a.png");
  CHECK(fs::path(s[2].first).filename() == "b_gray.PNG");
  CHECK(fs::path(s[3].first).filename() == "c.png");
  CHECK(s[0].second == 0);
  CHECK(s[3].second == 1);
  CHECK(ds.label(0) == 0);  // from the file list, nothing decoded
  CHECK(ds.label(3) == 1);
  CHECK_CONTAINS(error_of<IndexError>([&] { ds.label(4); }), "index 4 is out of range");
  check_equal(ds.get(1).image, fixture("df_img_a"));       // RGB PNG
  check_equal(ds.get(2).image, fixture("df_img_b_gray"));  // grey PNG -> 3 equal channels
  check_equal(ds.get(3).image, fixture("df_img_c"));       // RGBA PNG -> alpha dropped
  CHECK(ds.get(3).label == 1);
  // JPEG: stb's decoder and libjpeg round differently; values agree to a few levels
  const Tensor jpg = ds.get(0).image;
  REQUIRE(jpg.sizes() == Shape{3, 16, 16});
  const auto a = testing::values(jpg), b = testing::values(fixture("df_img_x"));
  double worst = 0, mean = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
    mean += std::fabs(a[i] - b[i]) / static_cast<double>(a.size());
  }
  CHECK(worst <= 8);
  CHECK(mean <= 1.5);
}

TEST_CASE("read_image: channel choices and errors") {
  const Tensor gray = read_image(fixture_path("df_images/cat/b_gray.PNG"), 1);
  check_equal(gray, fixture("df_img_b_gray_l").unsqueeze(0));
  CHECK(read_image(fixture_path("df_images/cat/sub/c.png"), 0).sizes() == Shape{4, 4, 4});
  CHECK(read_image(fixture_path("df_images/cat/b_gray.PNG"), 0).sizes() == Shape{1, 6, 3});
  std::string m = error_of<IOError>([&] { read_image(fixture_path("df_not_an_image.png")); });
  CHECK_CONTAINS(m, "cannot decode");
  CHECK_CONTAINS(m, "df_not_an_image.png");
  CHECK_CONTAINS(error_of<IOError>([&] { read_image(fixture_path("no_such.png")); }), "cannot open");
  CHECK_CONTAINS(error_of<ValueError>([&] { read_image(fixture_path("df_img_a.npy"), 2); }), "channels must be");
  TempDir tmp;
  CHECK_CONTAINS(error_of<IOError>([&] { ImageFolder((tmp.path / "none").string()); }), "is not a folder");
  CHECK_CONTAINS(error_of<IOError>([&] { ImageFolder(tmp.path.string()); }), "has no class sub-folders");
  tmp.file("dog/readme.txt", {1, 2});
  m = error_of<IOError>([&] { ImageFolder(tmp.path.string()); });
  CHECK_CONTAINS(m, "found no image file for class 'dog'");
}

// ---------------------------------------------------------------------------------------------- transforms
TEST_CASE("resize matches torchvision Resize(antialias=False) / F.interpolate(bilinear, align_corners=False)") {
  const Tensor x = fixture("df_tf_x");  // float32 [3, 7, 9]
  for (auto [h, w] : std::vector<std::pair<int, int>>{{4, 5}, {12, 15}, {7, 9}, {3, 20}, {1, 1}}) {
    INFO(h, "x", w);
    check_close(resize(x, h, w), fixture("df_tf_resize_" + std::to_string(h) + "x" + std::to_string(w)), 1e-5, 1e-6);
  }
  check_close(resize(x, 5), fixture("df_tf_resize_short5"), 1e-5, 1e-6);
  CHECK(resize(x, 5).sizes() == Shape{3, 5, 6});
  const Tensor xt = fixture("df_tf_xt");
  check_close(resize(xt, 4), fixture("df_tf_resize_short4_tall"), 1e-5, 1e-6);
  check_close(resize(fixture("df_tf_xb"), 8, 3), fixture("df_tf_resize_b64"), 1e-12, 1e-12);  // float64 batch
  check_close(resize(x.transpose(1, 2).contiguous().transpose(1, 2), 4, 5), fixture("df_tf_resize_4x5"));  // strided
  {
    // uint8: interpolated in float32, rounded back. PyTorch's float sums can differ from ours in the last bit,
    // which moves values within an ulp of .5 by one level (4 of 189 here); all others are equal.
    const Tensor r = resize(fixture("df_tf_u8"), 9, 7);
    CHECK(r.dtype() == kUInt8);
    const auto a = testing::values(r), b = testing::values(fixture("df_tf_resize_u8"));
    REQUIRE(a.size() == b.size());
    int off = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(std::fabs(a[i] - b[i]) <= 1);
      off += a[i] != b[i];
    }
    CHECK(off <= 6);
  }
  CHECK_CONTAINS(error_of<DTypeError>([&] { resize(zeros({1, 4, 4}, kInt32), 2, 2); }),
                 "expected a float32 or float64 image, got int32");
  CHECK_CONTAINS(error_of<ValueError>([&] { resize(x, 0, 3); }), "positive output size");
}

TEST_CASE("normalize, to_float_image, hflip, pad + crop match torchvision") {
  const Tensor x = fixture("df_tf_x");
  check_close(normalize(x, {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}), fixture("df_tf_normalize"), 1e-6, 1e-7);
  check_equal(to_float_image(fixture("df_tf_u8")), fixture("df_tf_to_float"));
  check_equal(to_float_image(fixture("df_tf_u8")), fixture("df_tf_to_tensor_pil"));
  check_equal(hflip(x), fixture("df_tf_hflip"));
  check_equal(crop(pad(x, 2), 1, 3, 5, 6), fixture("df_tf_pad_crop"));
  CHECK(to_float_image(zeros({5, 6}, kUInt8)).sizes() == Shape{1, 5, 6});
  const Tensor g = grayscale_to_rgb(to_float_image(fixture("df_mnist_train_x")[0]));
  CHECK(g.sizes() == Shape{3, 28, 28});
  check_equal(g[2], g[0]);
  CHECK(grayscale_to_rgb(x).is_same(x));
  CHECK_CONTAINS(error_of<ShapeError>([&] { normalize(x, {0.5, 0.5}, {1, 1}); }), "expected 1 or 3 mean and std");
  CHECK_CONTAINS(error_of<ValueError>([&] { normalize(x, {0.5}, {0}); }), "std evaluated to zero");
  CHECK_CONTAINS(error_of<ShapeError>([&] { grayscale_to_rgb(zeros({2, 3, 3})); }), "expected [1, H, W]");
  CHECK_CONTAINS(error_of<ValueError>([&] { crop(x, 3, 0, 5, 9); }), "outside the 7x9 image");
}

TEST_CASE("random transforms: reproducible from the generator, values are a padded window / a mirror") {
  const Tensor x = fixture("df_tf_x");
  Compose aug{transforms::RandomCrop(7, 2), transforms::RandomHorizontalFlip()};
  Generator g1(5), g2(5);
  std::set<std::pair<int64_t, int64_t>> offsets;
  int flips = 0;
  for (int k = 0; k < 40; ++k) {
    const Tensor a = aug(x, g1), b = aug(x, g2);
    check_equal(a, b);
    REQUIRE(a.sizes() == Shape{3, 7, 7});
    // a must be one window of the padded image, possibly mirrored
    const Tensor padded = pad(x, 2);
    bool found = false;
    for (int64_t t = 0; t <= 4 && !found; ++t)
      for (int64_t l = 0; l <= 6 && !found; ++l) {
        const Tensor win = crop(padded, t, l, 7, 7);
        for (int f = 0; f < 2 && !found; ++f) {
          const auto va = testing::values(a), vw = testing::values(f ? hflip(win) : win);
          if (va == vw) {
            found = true;
            offsets.insert({t, l});
            flips += f;
          }
        }
      }
    CHECK(found);
  }
  CHECK(offsets.size() > 5);          // many windows drawn
  CHECK((flips > 5 && flips < 35));  // about half mirrored
  Generator g(1);
  check_equal(transforms::RandomHorizontalFlip(1.0)(x, g), hflip(x));
  CHECK(transforms::RandomHorizontalFlip(0.0)(x, g).is_same(x));
  CHECK_CONTAINS(error_of<ValueError>([&] { transforms::RandomCrop(10)(x, g); }), "larger than the input image size 7x9");
  const Compose full{transforms::ToTensor(), transforms::GrayscaleToRgb(), transforms::Resize(32),
                     transforms::Normalize({0.5}, {0.25})};
  const Tensor y = full(fixture("df_mnist_train_x")[0].unsqueeze(0), g);
  CHECK(y.sizes() == Shape{3, 32, 32});
  CHECK(y.dtype() == kFloat32);
}

// ---------------------------------------------------------------------------------------------- DataLoader
namespace {
// N samples, image i is a 1x2x2 uint8 filled with i, label i % 3.
TensorDataset numbered(int64_t n) {
  Tensor imgs = empty({n, 1, 2, 2}, kUInt8);
  Tensor labs = empty({n}, kInt64);
  for (int64_t i = 0; i < n; ++i) {
    imgs[i].fill_(i);
    labs.data<int64_t>()[i] = i % 3;
  }
  return TensorDataset(imgs, labs);
}
// The sample index each row of a batch came from (pixel (0,0) * 255, before any augmentation).
std::vector<int64_t> ids(const Batch& b) {
  std::vector<int64_t> out;
  for (int64_t k = 0; k < b.images.size(0); ++k)
    out.push_back(std::lround(b.images[k][0][0][0].item<float>() * 255.0f));
  return out;
}
std::vector<Batch> all(DataLoader::Epoch e) {
  std::vector<Batch> out;
  for (Batch& b : e) out.push_back(b);
  return out;
}
void check_same(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    check_equal(a[i].images, b[i].images);
    check_equal(a[i].labels, b[i].labels);
    CHECK(a[i].index == b[i].index);
  }
}
// A dataset that counts get() calls, sleeps a little, and throws at one index.
struct Tricky : Dataset {
  TensorDataset inner = numbered(20);
  int64_t throw_at = -1;
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
  int64_t size() const override { return inner.size(); }
  Example get(int64_t i) const override {
    ++*calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    TORCHLET_CHECK(i != throw_at, IOError, "[Tricky] sample ", i, " is broken");
    return inner.get(i);
  }
};
}  // namespace

TEST_CASE("DataLoader: batches, every sample once per epoch, drop_last, labels follow images") {
  DataLoader plain(numbered(10), {}, {.batch_size = 3});
  CHECK(plain.size() == 4);
  auto batches = all(plain.epoch(0));
  REQUIRE(batches.size() == 4);
  CHECK(batches[0].images.sizes() == Shape{3, 1, 2, 2});
  CHECK(batches[0].images.dtype() == kFloat32);
  CHECK(batches[3].images.sizes() == Shape{1, 1, 2, 2});
  CHECK(ids(batches[1]) == std::vector<int64_t>{3, 4, 5});  // no shuffle: dataset order
  CHECK(batches[2].labels.data<int64_t>()[0] == 0);             // sample 6 -> label 0
  CHECK(batches[0].images[1][0][1][1].item<float>() == 1.0f / 255.0f);

  DataLoader shuffled(numbered(10), {}, {.batch_size = 3, .shuffle = true, .drop_last = true, .seed = 42});
  CHECK(shuffled.size() == 3);
  for (int64_t e = 0; e < 3; ++e) {
    std::set<int64_t> seen;
    for (const Batch& b : all(shuffled.epoch(e))) {
      const auto id = ids(b);
      for (size_t k = 0; k < id.size(); ++k) {
        CHECK(b.labels.data<int64_t>()[k] == id[k] % 3);
        CHECK(seen.insert(id[k]).second);
      }
      CHECK(b.epoch == e);
    }
    CHECK(seen.size() == 9);  // the 10th dropped with the last batch
  }
  DataLoader keep_last(numbered(10), {}, {.batch_size = 3, .shuffle = true, .seed = 42});
  std::set<int64_t> seen;
  for (const Batch& b : all(keep_last.epoch(1)))
    for (int64_t id : ids(b)) CHECK(seen.insert(id).second);
  CHECK(seen.size() == 10);
}

TEST_CASE("DataLoader determinism: same seed -> same batches with and without prefetching; epochs differ") {
  TensorDataset d = mnist(fixture_path("df_mnist"), true);
  Tensor imgs = empty({30, 28, 28}, kUInt8);
  for (int64_t i = 0; i < 30; ++i) imgs[i].copy_(d.images()[i % 6]);
  Tensor labs = arange(30);
  TensorDataset ds(imgs, labs);
  const Compose aug28{transforms::ToTensor(), transforms::GrayscaleToRgb(), transforms::RandomCrop(28, 4),
                      transforms::RandomHorizontalFlip(), transforms::Normalize({0.5, 0.4, 0.3}, {0.2, 0.2, 0.2})};
  auto make = [&](int64_t prefetch, uint64_t seed) {
    return DataLoader(ds, aug28, {.batch_size = 4, .shuffle = true, .seed = seed, .prefetch = prefetch});
  };
  const auto ref = all(make(0, 7).epoch(0));
  REQUIRE(ref.size() == 8);
  CHECK(ref[0].images.sizes() == Shape{4, 3, 28, 28});
  check_same(all(make(1, 7).epoch(0)), ref);
  check_same(all(make(3, 7).epoch(0)), ref);
  check_same(all(make(2, 7).epoch(0)), all(make(2, 7).epoch(0)));
  // epoch e depends only on (seed, e): a fresh loader jumping to epoch 2 sees what a long run sees there
  DataLoader long_run = make(2, 7);
  std::vector<Batch> e2;
  for (int64_t e = 0; e < 3; ++e) e2 = all(long_run.epoch(e));
  check_same(all(make(0, 7).epoch(2)), e2);
  // resuming mid-epoch gives the remaining batches
  auto tail = all(make(2, 7).epoch(2, 5));
  REQUIRE(tail.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    check_equal(tail[i].images, e2[5 + i].images);
    CHECK(tail[i].index == static_cast<int64_t>(5 + i));
  }
  // different epochs and different seeds give different orders
  CHECK(make(0, 7).order(0) != make(0, 7).order(1));
  CHECK(make(0, 7).order(0) != make(0, 8).order(0));
  CHECK(make(0, 7).order(3) == make(0, 7).order(3));
  // the same sample is augmented differently in different epochs (same order position aside)
  const auto b0 = make(0, 7).batch(0, 0), b1 = make(0, 7).batch(1, 0);
  CHECK(testing::values(b0.images) != testing::values(b1.images));
  check_equal(make(0, 7).batch(0, 3).images, ref[3].images);
}

TEST_CASE("DataLoader prefetching: bounded, stops cleanly mid-epoch, rethrows worker errors in order") {
  auto tricky = std::make_shared<Tricky>();
  {
    DataLoader dl(std::shared_ptr<const Dataset>(tricky), {}, {.batch_size = 2, .prefetch = 2});
    auto e = dl.epoch(0);
    auto b = e.next();
    REQUIRE(b);
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    // the worker made at most the batch taken + 2 queued + 1 in progress
    CHECK(tricky->calls->load() <= 2 * 4);
  }  // destroyed mid-epoch: joins without hanging
  for (int64_t prefetch : {0, 1, 3}) {
    INFO("prefetch ", prefetch);
    auto bad = std::make_shared<Tricky>();
    bad->throw_at = 9;  // batch 4 with batch_size 2
    DataLoader dl(std::shared_ptr<const Dataset>(bad), {}, {.batch_size = 2, .prefetch = prefetch});
    auto e = dl.epoch(0);
    int good = 0;
    std::string message;
    try {
      while (auto b = e.next()) ++good;
    } catch (const IOError& err) {
      message = err.what();
    }
    CHECK(good == 4);
    CHECK(message == "[Tricky] sample 9 is broken");
    CHECK_FALSE(e.next());  // the epoch is over after the error
  }
  // an epoch can outlive its loader, and moving it keeps the worker running
  DataLoader::Epoch moved = DataLoader(numbered(7), {}, {.batch_size = 2, .prefetch = 1}).epoch(0);
  DataLoader::Epoch other = std::move(moved);
  int n = 0;
  for (Batch& b : other) n += static_cast<int>(b.images.size(0));
  CHECK(n == 7);
}

TEST_CASE("DataLoader errors") {
  CHECK_CONTAINS(error_of<ValueError>([] { DataLoader(numbered(3), {}, {.batch_size = 0}); }),
                 "batch_size should be a positive integer value, but got batch_size=0");
  const Compose no_float{[](const Tensor& x, Generator&) { return x; }};
  CHECK_CONTAINS(error_of<DTypeError>([&] { DataLoader(numbered(3), no_float).batch(0, 0); }),
                 "sample 0 came out of the transform as uint8 [1, 2, 2], expected float32 [C, H, W]");
  struct Ragged : Dataset {
    int64_t size() const override { return 2; }
    Example get(int64_t i) const override { return {zeros({1, 3 + i, 3}, kUInt8), 0}; }
  };
  const std::string m = error_of<ShapeError>([&] { DataLoader(Ragged{}, {}, {.batch_size = 2}).batch(0, 0); });
  CHECK_CONTAINS(m, "sample 1 has image shape [1, 4, 3] but the batch's first sample has [1, 3, 3]");
  CHECK_CONTAINS(error_of<IndexError>([] { DataLoader(numbered(3)).batch(0, 3); }), "batch 3 is out of range");
}
}

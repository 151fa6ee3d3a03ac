#pragma once
/// \file DataLoader: batches of a Dataset through a transform, shuffled per epoch from a seed, prefetched by a
/// background thread.
///
/// Determinism: everything random is derived from the loader's seed alone. The order of epoch e is a
/// permutation drawn from a Generator seeded with mix(seed, e); sample i of epoch e is transformed with a
/// Generator seeded with mix(seed, e, i). So epoch e's batches depend only on (seed, e) — not on earlier
/// epochs, on prefetching, or on timing — and a run resumed at epoch k (even at batch j: `epoch(k, j)`) sees
/// exactly the batches an uninterrupted run would have seen. Save `epoch` and the batch index in the
/// checkpoint; nothing else is needed.
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "torchlet/data/dataset.hpp"
#include "torchlet/data/transforms.hpp"

namespace torchlet::data {

/// Options of DataLoader (torch.utils.data.DataLoader's names where they exist).
struct DataLoaderOptions {
  int64_t batch_size = 1;  ///< Samples per batch.
  bool shuffle = false;    ///< A new order every epoch (a function of seed and epoch); else dataset order.
  bool drop_last = false;  ///< Drop the last, smaller batch.
  uint64_t seed = 0;       ///< Seeds the shuffling and every random transform.
  int64_t prefetch = 2;    ///< Batches a background thread prepares ahead; 0 = no thread (batches made in next()).
};

/// One batch: images float32 [B, C, H, W] and labels int64 [B].
struct Batch {
  Tensor images;       ///< float32 [B, C, H, W].
  Tensor labels;       ///< int64 [B].
  int64_t epoch = 0;   ///< The epoch it belongs to.
  int64_t index = 0;   ///< Its position in the epoch (0-based).
};

namespace detail {
/// SplitMix64's finaliser: a well-mixed 64-bit value from `x`.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
/// Asks the kernel for transparent huge pages on a large fresh buffer before it is first written (Linux with
/// THP in "madvise" mode): a batch of 64 x 3 x 224 x 224 floats otherwise costs ~9400 page faults. A hint only.
inline void advise_huge_pages(void* data, size_t nbytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kPage = 4096;
  if (nbytes < (size_t{4} << 20)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + nbytes) & ~(kPage - 1);
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)nbytes;
#endif
}
}  // namespace detail

/// The seed of epoch `epoch`'s shuffle.
inline uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  return detail::mix64(detail::mix64(seed) ^ static_cast<uint64_t>(epoch));
}
/// The seed of the transform of dataset sample `index` in epoch `epoch`.
inline uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return detail::mix64(epoch_seed(seed, epoch) ^ detail::mix64(static_cast<uint64_t>(index) + 0x5851f42d4c957f2dull));
}

/// Batches of a dataset, like torch.utils.data.DataLoader with a seeded sampler: `for (Batch& b :
/// loader.epoch(e))`. Each sample goes through the transform (to_float_image when none is given) and must
/// come out float32 [C, H, W] of one shape per batch. The loader shares the dataset (copies are cheap).
class DataLoader {
 public:
  /// A loader over a shared dataset.
  DataLoader(std::shared_ptr<const Dataset> dataset, Compose transform = {}, DataLoaderOptions options = {})
      : dataset_(std::move(dataset)), transform_(std::move(transform)), options_(options) {
    TORCHLET_CHECK(dataset_ != nullptr, ValueError, "[DataLoader] the dataset is null");
    TORCHLET_CHECK(options_.batch_size >= 1, ValueError, "[DataLoader] batch_size should be a positive integer "
                   "value, but got batch_size=", options_.batch_size);
    TORCHLET_CHECK(options_.prefetch >= 0, ValueError, "[DataLoader] prefetch must be >= 0, got ", options_.prefetch);
  }
  /// A loader over a copy of `dataset` (any Dataset subclass, e.g. TensorDataset or ImageFolder).
  template <class D>
    requires std::is_base_of_v<Dataset, std::remove_cvref_t<D>>
  explicit DataLoader(D&& dataset, Compose transform = {}, DataLoaderOptions options = {})
      : DataLoader(std::make_shared<const std::remove_cvref_t<D>>(std::forward<D>(dataset)), std::move(transform),
                   options) {}

  const Dataset& dataset() const { return *dataset_; }          ///< The dataset.
  const DataLoaderOptions& options() const { return options_; }  ///< The options.
  /// Batches per epoch (len(loader)).
  int64_t size() const {
    const int64_t n = dataset_->size(), b = options_.batch_size;
    return options_.drop_last ? n / b : (n + b - 1) / b;
  }

  /// Dataset indices in epoch `epoch`'s order: 0..N-1, or with shuffle a permutation that depends only on
  /// (seed, epoch).
  std::vector<int64_t> order(int64_t epoch) const {
    const int64_t n = dataset_->size();
    std::vector<int64_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
    if (options_.shuffle) {
      Generator gen(epoch_seed(options_.seed, epoch));
      for (int64_t i = n - 1; i > 0; --i) std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(gen.integer(0, i + 1))]);
    }
    return idx;
  }

  /// Batch `index` of epoch `epoch`, made on this thread (what the prefetching thread calls).
  Batch batch(int64_t epoch, int64_t index) const { return make_batch(order(epoch), epoch, index); }

  /// The batches of one epoch in order, prefetched by a background thread when options().prefetch > 0.
  /// Iterate it once (range-for or next()). Destroying it stops and joins the thread, even mid-epoch.
  /// It holds its own copy of the loader (which shares the dataset), so it may outlive the loader.
  class Epoch {
   public:
    /// Starts epoch `epoch` of `loader` at batch `first_batch`.
    Epoch(const DataLoader& loader, int64_t epoch, int64_t first_batch) : s_(std::make_unique<State>()) {
      TORCHLET_CHECK(first_batch >= 0, ValueError, "[DataLoader] first batch must be >= 0, got ", first_batch);
      s_->loader = std::make_unique<const DataLoader>(loader);
      s_->epoch = epoch;
      s_->order = loader.order(epoch);
      s_->next = first_batch;
      s_->end = loader.size();
      if (loader.options_.prefetch > 0 && s_->next < s_->end) {
        State* st = s_.get();
        s_->worker = std::thread([st] { st->run(); });
      }
    }
    Epoch(Epoch&&) noexcept = default;             ///< Moves the epoch (the thread keeps running).
    Epoch& operator=(Epoch&& o) noexcept {         ///< Stops this epoch's thread, then takes `o`'s.
      if (this != &o) {
        stop();
        s_ = std::move(o.s_);
      }
      return *this;
    }
    ~Epoch() { stop(); }  ///< Stops and joins the prefetching thread (mid-epoch too).

    /// The next batch, or nothing at the end of the epoch. Rethrows an exception raised while making it
    /// (by the dataset or a transform), after which the epoch is over.
    std::optional<Batch> next() {
      State& s = *s_;
      if (!s.worker.joinable()) {  // no prefetching
        if (s.failed || s.next >= s.end) return std::nullopt;
        const int64_t i = s.next++;
        try {
          return s.loader->make_batch(s.order, s.epoch, i);
        } catch (...) {
          s.failed = true;
          throw;
        }
      }
      std::unique_lock lock(s.mutex);
      s.cv.wait(lock, [&] { return !s.queue.empty() || s.error || s.done; });
      if (!s.queue.empty()) {
        Batch b = std::move(s.queue.front());
        s.queue.pop_front();
        s.cv.notify_all();
        return b;
      }
      if (s.error) {
        std::exception_ptr e = std::exchange(s.error, nullptr);
        s.done = true;
        std::rethrow_exception(e);
      }
      return std::nullopt;
    }

    /// Input iterator over the remaining batches (for range-for).
    class iterator {
     public:
      using value_type = Batch;             ///< Element type.
      using difference_type = std::ptrdiff_t;  ///< Required by the iterator concepts.
      iterator() = default;                 ///< The end iterator.
      /// An iterator that pulls from `e`.
      explicit iterator(Epoch* e) : epoch_(e) { ++*this; }
      Batch& operator*() { return *current_; }   ///< The current batch.
      Batch* operator->() { return &*current_; }  ///< The current batch.
      /// Pulls the next batch.
      iterator& operator++() {
        current_ = epoch_->next();
        if (!current_) epoch_ = nullptr;
        return *this;
      }
      bool operator==(const iterator& o) const { return epoch_ == o.epoch_; }  ///< Both at the end, or same epoch.

     private:
      Epoch* epoch_ = nullptr;
      std::optional<Batch> current_;
    };
    iterator begin() { return iterator(this); }  ///< Starts pulling batches.
    iterator end() { return iterator(); }        ///< The end.

   private:
    struct State {
      std::unique_ptr<const DataLoader> loader;
      int64_t epoch = 0, next = 0, end = 0;
      std::vector<int64_t> order;
      std::thread worker;
      std::mutex mutex;
      std::condition_variable cv;
      std::deque<Batch> queue;
      std::exception_ptr error;
      bool stop = false, done = false, failed = false;

      void run() {
        const auto cap = static_cast<size_t>(loader->options_.prefetch);
        for (int64_t i = next; i < end; ++i) {
          {
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return stop || queue.size() < cap; });
            if (stop) return;
          }
          std::exception_ptr failure;
          std::optional<Batch> b;
          try {
            b = loader->make_batch(order, epoch, i);
          } catch (...) {
            failure = std::current_exception();
          }
          // published after the catch block has ended, so this thread is done with the exception object
          std::lock_guard lock(mutex);
          if (failure) {
            error = std::move(failure);
            cv.notify_all();
            return;
          }
          queue.push_back(std::move(*b));
          cv.notify_all();
        }
        std::lock_guard lock(mutex);
        done = true;
        cv.notify_all();
      }
    };
    void stop() {
      if (!s_ || !s_->worker.joinable()) return;
      {
        std::lock_guard lock(s_->mutex);
        s_->stop = true;
      }
      s_->cv.notify_all();
      s_->worker.join();
    }
    std::unique_ptr<State> s_;
  };

  /// The batches of epoch `epoch`, from batch `first_batch` on (to resume mid-epoch).
  Epoch epoch(int64_t epoch, int64_t first_batch = 0) const { return Epoch(*this, epoch, first_batch); }

 private:
  Batch make_batch(const std::vector<int64_t>& order, int64_t epoch, int64_t index) const {
    const int64_t n = static_cast<int64_t>(order.size()), b = options_.batch_size;
    TORCHLET_CHECK(index >= 0 && index < size(), IndexError, "[DataLoader] batch ", index, " is out of range: an "
                   "epoch has ", size(), " batches");
    const int64_t start = index * b, count = std::min(b, n - start);
    Batch out;
    out.epoch = epoch;
    out.index = index;
    out.labels = empty({count}, kInt64);
    Shape first_shape;
    for (int64_t k = 0; k < count; ++k) {
      const int64_t i = order[static_cast<size_t>(start + k)];
      Example ex = dataset_->get(i);
      Generator gen(sample_seed(options_.seed, epoch, i));
      Tensor img = transform_.empty() ? to_float_image(ex.image) : transform_(ex.image, gen);
      TORCHLET_CHECK(img.defined() && img.dtype() == kFloat32 && img.dim() == 3, DTypeError, "[DataLoader] sample ",
                     i, " came out of the transform as ", img.defined() ? std::string(dtype_name(img.dtype())) : "",
                     " ", img.defined() ? shape_str(img.sizes()) : "undefined", ", expected float32 [C, H, W] "
                     "(start the transform with ToTensor())");
      if (k == 0) {
        first_shape = img.sizes();
        Shape shape{count};
        shape.insert(shape.end(), first_shape.begin(), first_shape.end());
        out.images = empty(shape, kFloat32);
        detail::advise_huge_pages(out.images.data_ptr(), static_cast<size_t>(out.images.nbytes()));
      }
      TORCHLET_CHECK(img.sizes() == first_shape, ShapeError, "[DataLoader] sample ", i, " has image shape ",
                     shape_str(img.sizes()), " but the batch's first sample has ", shape_str(first_shape),
                     " (resize or crop to one size)");
      const Tensor c = img.contiguous();
      std::memcpy(static_cast<char*>(out.images.data_ptr()) + k * c.nbytes(), c.data_ptr(),
                  static_cast<size_t>(c.nbytes()));
      out.labels.data<int64_t>()[k] = ex.label;
    }
    return out;
  }

  std::shared_ptr<const Dataset> dataset_;
  Compose transform_;
  DataLoaderOptions options_;
};
}  // namespace torchlet::data

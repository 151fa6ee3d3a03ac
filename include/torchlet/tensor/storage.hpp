#pragma once
/// \file Storage: refcounted bytes on a device, owned (64-byte aligned, from the device's allocator)
/// or borrowed (e.g. from a memory-mapped file kept alive by the storage).
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "torchlet/core/device.hpp"
#include "torchlet/core/error.hpp"

namespace torchlet {

/// Alignment of every buffer the CPU allocator hands out.
inline constexpr size_t kStorageAlignment = 64;

/// A block of device memory and who frees it. `owner` holds the memory alive; null for borrowed raw pointers.
struct DataPtr {
  void* ptr = nullptr;
  std::shared_ptr<void> owner;
};

/// Allocates memory for one device type. The CUDA backend registers its own (a caching allocator).
class Allocator {
 public:
  virtual ~Allocator() = default;
  /// Returns `nbytes` of memory on `device`; raises on failure.
  virtual DataPtr allocate(size_t nbytes, Device device) = 0;
};

/// The default CPU allocator: 64-byte aligned blocks from the C++ heap. Blocks of 4 MiB and more are aligned to
/// 2 MiB and, on Linux, advised to use transparent huge pages (THP's "madvise" mode is Debian's default): their
/// first write then costs one page fault per 2 MiB instead of one per 4 KiB, which on virtual machines is the
/// larger part of filling a fresh activation, batch or checkpoint tensor.
class CPUAllocator final : public Allocator {
 public:
  /// Blocks at least this large get huge-page alignment and advice.
  static constexpr size_t kHugeBlock = size_t{4} << 20;
  /// Alignment of huge blocks (the x86-64 huge page size).
  static constexpr size_t kHugeAlignment = size_t{2} << 20;

  DataPtr allocate(size_t nbytes, Device) override {
    const size_t rounded = (nbytes + kStorageAlignment - 1) / kStorageAlignment * kStorageAlignment;
    const size_t align = rounded >= kHugeBlock ? kHugeAlignment : kStorageAlignment;
    void* p = rounded ? ::operator new(rounded, std::align_val_t(align), std::nothrow) : nullptr;
    TORCHLET_CHECK(p || !rounded, Error, "[CPUAllocator] out of memory allocating ", nbytes, " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == kHugeAlignment) (void)::madvise(p, rounded / kHugeAlignment * kHugeAlignment, MADV_HUGEPAGE);
#endif
    if (align == kHugeAlignment) {
      return {p, std::shared_ptr<void>(p, [](void* q) { ::operator delete(q, std::align_val_t(kHugeAlignment)); })};
    }
    return {p, std::shared_ptr<void>(p, [](void* q) { ::operator delete(q, std::align_val_t(kStorageAlignment)); })};
  }
};

namespace detail {
inline Allocator*& allocator_slot(DeviceType t) {
  static Allocator* slots[2] = {nullptr, nullptr};
  return slots[static_cast<int>(t)];
}
}  // namespace detail

/// Installs the allocator used for new storages on devices of type `t` (nullptr restores the default).
inline void set_allocator(DeviceType t, Allocator* a) { detail::allocator_slot(t) = a; }

/// The allocator for devices of type `t`; raises DeviceError for CUDA when no CUDA backend is compiled in.
inline Allocator& get_allocator(Device d) {
  if (Allocator* a = detail::allocator_slot(d.type)) return *a;
  if (d.is_cpu()) {
    static CPUAllocator cpu;
    return cpu;
  }
  TORCHLET_THROW(DeviceError, "[allocator] device ", d,
                 " is not available: this program was built without torchlet's CUDA backend");
}

namespace detail {
/// Shared state of a storage.
struct StorageImpl {
  DataPtr data;
  size_t nbytes = 0;
  Device device;
  bool borrowed = false;
  uint32_t version = 0;  ///< bumped by every in-place write; autograd checks it on saved tensors
};
}  // namespace detail

/// Refcounted bytes. Copies share the same bytes; the memory lives while any copy (or tensor) does.
class Storage {
 public:
  Storage() = default;

  /// New memory of `nbytes` on `device`, uninitialised.
  static Storage allocate(size_t nbytes, Device device = kCPU) {
    Storage s;
    s.impl_ = std::make_shared<detail::StorageImpl>();
    s.impl_->data = get_allocator(device).allocate(nbytes, device);
    s.impl_->nbytes = nbytes;
    s.impl_->device = device;
    return s;
  }

  /// Borrows `nbytes` at `data` without copying; `keep_alive` (e.g. a memory map) is held until the
  /// last user of the storage is gone. With a null `keep_alive` the caller must outlive every user.
  static Storage borrow(void* data, size_t nbytes, std::shared_ptr<void> keep_alive = nullptr,
                        Device device = kCPU) {
    Storage s;
    s.impl_ = std::make_shared<detail::StorageImpl>();
    s.impl_->data = {data, std::move(keep_alive)};
    s.impl_->nbytes = nbytes;
    s.impl_->device = device;
    s.impl_->borrowed = true;
    return s;
  }

  /// Owned memory that is part of a larger block (e.g. one allocation for all the tensors of a checkpoint):
  /// `nbytes` at `data`, with `block` keeping the whole block alive. Unlike borrow(), the bytes are torchlet's.
  static Storage part_of(void* data, size_t nbytes, std::shared_ptr<void> block, Device device = kCPU) {
    Storage s = borrow(data, nbytes, std::move(block), device);
    s.impl_->borrowed = false;
    return s;
  }

  bool defined() const { return impl_ != nullptr; }                      ///< False for a default-made storage.
  void* data() const { return impl_ ? impl_->data.ptr : nullptr; }       ///< First byte.
  size_t nbytes() const { return impl_ ? impl_->nbytes : 0; }            ///< Size in bytes.
  Device device() const { return impl_ ? impl_->device : kCPU; }         ///< Where the bytes live.
  bool is_borrowed() const { return impl_ && impl_->borrowed; }          ///< True for borrowed memory.
  long use_count() const { return impl_ ? impl_.use_count() : 0; }       ///< Number of handles sharing it.
  /// How many in-place writes the bytes have seen (shared by all views; checked by autograd).
  uint32_t version() const { return impl_ ? impl_->version : 0; }
  /// Records one in-place write.
  void bump_version() const {
    if (impl_) ++impl_->version;
  }
  /// True when both handles refer to the same bytes.
  bool is_same(const Storage& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<detail::StorageImpl> impl_;
};
}  // namespace torchlet

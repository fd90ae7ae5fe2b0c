#include "store/sqlite_wal_vfs.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include <sqlite3.h>

namespace kervan::store {
namespace {

sqlite3_vfs* g_base = nullptr;  // the default VFS we wrap; set once by Register()

// Writes are flushed when the buffer would grow past this (a commit of
// 64 events dirties about 40 pages: ~170 KiB).
constexpr size_t kMaxBuffered = 4 << 20;
// The unix VFS writes at most 128 KiB - 1 per write() (it masks the length
// with 0x1ffff and reports a short write as a full disk), so flush in
// pieces below that.
constexpr size_t kMaxWrite = 120 << 10;

// A WAL file: our sqlite3_file header, the write buffer, and the default
// VFS's file object right behind it (kRealOffset bytes in).
struct WalFile {
  sqlite3_file base;  // must be first: SQLite sees this
  std::vector<char> buffer;
  sqlite3_int64 buffer_start = 0;  // file offset of buffer[0]
  int deferred_error = SQLITE_OK;  // a flush failed where it could not be reported

  sqlite3_file* real();
  int Flush() {
    sqlite3_file* r = real();
    int rc = SQLITE_OK;
    for (size_t done = 0; done < buffer.size() && rc == SQLITE_OK; done += kMaxWrite) {
      size_t n = std::min(kMaxWrite, buffer.size() - done);
      rc = r->pMethods->xWrite(r, buffer.data() + done, static_cast<int>(n),
                               buffer_start + static_cast<sqlite3_int64>(done));
    }
    buffer.clear();
    return rc;
  }
  // Flushes and reports any earlier failure first.
  int FlushChecked() {
    int rc = Flush();
    if (deferred_error != SQLITE_OK) {
      rc = deferred_error;
      deferred_error = SQLITE_OK;
    }
    return rc;
  }
  void FlushOrDefer() {
    int rc = Flush();
    if (rc != SQLITE_OK && deferred_error == SQLITE_OK)
      deferred_error = rc;
  }
};

constexpr size_t kRealOffset = (sizeof(WalFile) + 15) & ~size_t{15};

sqlite3_file* WalFile::real() {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(this) + kRealOffset);
}

WalFile* Wal(sqlite3_file* f) {
  return reinterpret_cast<WalFile*>(f);
}
sqlite3_file* Real(sqlite3_file* f) {
  return Wal(f)->real();
}

int WalClose(sqlite3_file* f) {
  WalFile* w = Wal(f);
  int rc = w->FlushChecked();
  sqlite3_file* r = w->real();
  int close_rc = r->pMethods->xClose(r);
  w->~WalFile();
  return rc != SQLITE_OK ? rc : close_rc;
}

int WalRead(sqlite3_file* f, void* out, int amount, sqlite3_int64 offset) {
  if (int rc = Wal(f)->FlushChecked(); rc != SQLITE_OK)
    return rc;
  return Real(f)->pMethods->xRead(Real(f), out, amount, offset);
}

int WalWrite(sqlite3_file* f, const void* data, int amount, sqlite3_int64 offset) {
  WalFile* w = Wal(f);
  if (amount <= 0)
    return SQLITE_OK;
  bool contiguous = !w->buffer.empty() &&
                    offset == w->buffer_start + static_cast<sqlite3_int64>(w->buffer.size());
  if (!contiguous || w->buffer.size() + static_cast<size_t>(amount) > kMaxBuffered) {
    if (int rc = w->FlushChecked(); rc != SQLITE_OK)
      return rc;
    w->buffer_start = offset;
  }
  const char* p = static_cast<const char*>(data);
  w->buffer.insert(w->buffer.end(), p, p + amount);
  return SQLITE_OK;
}

int WalTruncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int rc = Wal(f)->FlushChecked(); rc != SQLITE_OK)
    return rc;
  return Real(f)->pMethods->xTruncate(Real(f), size);
}

int WalSync(sqlite3_file* f, int flags) {
  if (int rc = Wal(f)->FlushChecked(); rc != SQLITE_OK)
    return rc;
  return Real(f)->pMethods->xSync(Real(f), flags);
}

int WalFileSize(sqlite3_file* f, sqlite3_int64* size) {
  if (int rc = Wal(f)->FlushChecked(); rc != SQLITE_OK)
    return rc;
  return Real(f)->pMethods->xFileSize(Real(f), size);
}

int WalLock(sqlite3_file* f, int level) {
  return Real(f)->pMethods->xLock(Real(f), level);
}
int WalUnlock(sqlite3_file* f, int level) {
  return Real(f)->pMethods->xUnlock(Real(f), level);
}
int WalCheckReservedLock(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}

int WalFileControl(sqlite3_file* f, int op, void* arg) {
  if (int rc = Wal(f)->FlushChecked(); rc != SQLITE_OK)
    return rc;
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}

int WalSectorSize(sqlite3_file* f) {
  return Real(f)->pMethods->xSectorSize(Real(f));
}
int WalDeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}

// The shared-memory index is how other connections learn of new frames:
// write ours out before touching it (with synchronous=FULL the commit's
// xSync has already done so).
int WalShmMap(sqlite3_file* f, int page, int page_size, int extend, void volatile** out) {
  Wal(f)->FlushOrDefer();
  return Real(f)->pMethods->xShmMap(Real(f), page, page_size, extend, out);
}
int WalShmLock(sqlite3_file* f, int offset, int n, int flags) {
  Wal(f)->FlushOrDefer();
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void WalShmBarrier(sqlite3_file* f) {
  Wal(f)->FlushOrDefer();
  Real(f)->pMethods->xShmBarrier(Real(f));
}
int WalShmUnmap(sqlite3_file* f, int delete_flag) {
  Wal(f)->FlushOrDefer();
  return Real(f)->pMethods->xShmUnmap(Real(f), delete_flag);
}
int WalFetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
  if (int rc = Wal(f)->FlushChecked(); rc != SQLITE_OK)
    return rc;
  return Real(f)->pMethods->xFetch(Real(f), offset, amount, out);
}
int WalUnfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), offset, p);
}

const sqlite3_io_methods kWalMethods = {
    3,
    WalClose,
    WalRead,
    WalWrite,
    WalTruncate,
    WalSync,
    WalFileSize,
    WalLock,
    WalUnlock,
    WalCheckReservedLock,
    WalFileControl,
    WalSectorSize,
    WalDeviceCharacteristics,
    WalShmMap,
    WalShmLock,
    WalShmBarrier,
    WalShmUnmap,
    WalFetch,
    WalUnfetch,
};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  if ((flags & SQLITE_OPEN_WAL) == 0)
    return g_base->xOpen(g_base, name, file, flags, out_flags);
  auto* w = new (file) WalFile{};
  w->base.pMethods = nullptr;
  sqlite3_file* r = w->real();
  std::memset(r, 0, static_cast<size_t>(g_base->szOsFile));
  int rc = g_base->xOpen(g_base, name, r, flags, out_flags);
  if (rc != SQLITE_OK || r->pMethods == nullptr || r->pMethods->iVersion < 3) {
    if (rc == SQLITE_OK) {  // a default VFS older than we wrap: cannot forward everything
      r->pMethods->xClose(r);
      rc = SQLITE_CANTOPEN;
    }
    w->~WalFile();
    file->pMethods = nullptr;  // SQLite then does not call xClose
    return rc;
  }
  w->base.pMethods = &kWalMethods;
  return SQLITE_OK;
}

sqlite3_vfs* Register() {
  static sqlite3_vfs vfs;
  if (sqlite3_initialize() != SQLITE_OK)
    return nullptr;
  g_base = sqlite3_vfs_find(nullptr);
  if (g_base == nullptr || g_base->iVersion < 1)
    return nullptr;
  // Every other entry point is the default VFS's own, called with our
  // struct, which carries the default's pAppData and limits.
  vfs = *g_base;
  vfs.szOsFile = static_cast<int>(kRealOffset) + g_base->szOsFile;
  vfs.pNext = nullptr;
  vfs.zName = "kervan-wal-coalesce";
  vfs.xOpen = Open;
  if (sqlite3_vfs_register(&vfs, /*makeDflt=*/0) != SQLITE_OK)
    return nullptr;
  return &vfs;
}

}  // namespace

const char* CoalescingWalVfsName() {
  static sqlite3_vfs* vfs = Register();
  return vfs == nullptr ? "" : vfs->zName;
}

}  // namespace kervan::store

// A SQLite VFS that wraps the platform's default VFS and coalesces the
// writes SQLite makes to a WAL file (internal to store).
//
// SQLite writes each WAL frame with two write() calls (24-byte frame header,
// then the page), and a commit of N dirty pages with 2N calls; at the event
// log's rates that was about a seventh of the writer thread's CPU. This VFS
// buffers consecutive WAL writes in memory and hands them to the kernel as
// one write just before anything that could observe them: a sync, a read,
// a truncate, a size query, a file control, any operation on the shared
// memory index (which is how other connections learn of new frames) and
// close. Durability is unchanged: a commit is durable when SQLite's xSync on
// the WAL returns, and xSync writes the buffer out first. Files other than
// WALs go straight to the default VFS.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace kervan::store {

// Registers the VFS once (thread-safe) and returns its name for
// sqlite3_open_v2, or an empty string if it could not be registered (then
// use the default VFS).
const char* CoalescingWalVfsName();

// Deferred commit syncs, for the event log's pipelined group commit.
//
// While a deferral is bound to a thread, a COMMIT made on that thread (through
// this VFS) writes its WAL frames to the kernel as before -- a failed write
// still fails the COMMIT -- but the fdatasync that synchronous=FULL asks for
// is not made: the WAL file is remembered instead, and Sync() later makes
// every commit deferred so far durable with one fdatasync per WAL file. The
// caller must not treat a transaction as durable (acknowledge it) before a
// Sync() that started after its COMMIT returned has succeeded.
//
// Only commit syncs are deferred: a sync whose preceding frame write was a
// commit frame (its header's database-size field is non-zero) and that does
// not cover a write of the WAL header. So these stay synchronous: the sync
// of a new WAL header after a WAL restart (SQLite requires it to be durable
// before frames overwrite the old WAL), and the sync of the WAL before a
// checkpoint copies frames into the database (no commit frame written
// since the previous sync, also after a rolled-back transaction spilled
// frames).
//
// Until Sync() returns, other connections can already read the deferred
// transactions (SQLite publishes a commit in the shared-memory index when
// COMMIT returns): a reader that must see only durable data has to filter
// (the event log hides events beyond its durable head).
class WalSyncDeferral {
 public:
  WalSyncDeferral() = default;
  ~WalSyncDeferral();  // closes what Sync() did not (without syncing)
  WalSyncDeferral(const WalSyncDeferral&) = delete;
  WalSyncDeferral& operator=(const WalSyncDeferral&) = delete;

  // Binds this deferral to the calling thread (nullptr unbinds).
  static void BindToThisThread(WalSyncDeferral* deferral);

  // fdatasyncs every WAL file with a commit deferred since the previous
  // Sync(). Returns 0, or the first errno. Thread-safe.
  int Sync();

  // Called by the VFS on the bound thread: the WAL file `file_id` (open as
  // `fd`) has a deferred commit. Returns false if it could not be recorded
  // (the VFS then syncs at once).
  bool Add(uint64_t file_id, int fd);

 private:
  std::mutex mu_;
  std::vector<std::pair<uint64_t, int>> pending_;  // file id, our dup of its fd
};

}  // namespace kervan::store

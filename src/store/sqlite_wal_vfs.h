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

#include <string>

namespace kervan::store {

// Registers the VFS once (thread-safe) and returns its name for
// sqlite3_open_v2, or an empty string if it could not be registered (then
// use the default VFS).
const char* CoalescingWalVfsName();

}  // namespace kervan::store

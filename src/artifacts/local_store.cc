// The local filesystem store.
//
// Every path is resolved one component at a time with openat(O_NOFOLLOW)
// from a descriptor of the root held for the store's life, so neither ".."
// (refused by NormalizePath anyway) nor a symbolic link planted inside the
// root — to /etc, or to a sibling directory — can lead outside it, whatever
// happens to the tree between two calls. Blobs are written to a temporary
// file in their directory and renamed over the target after fsync.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "artifacts/artifacts.h"
#include "artifacts/internal.h"
#include "core/crypto.h"

namespace kervan::artifacts {
namespace {

// Temporary files carry a '#', which NormalizePath refuses: a client path
// can never name one, and listings skip them.
constexpr std::string_view kTempPrefix = ".upload#";

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::string ErrnoText(int err) {
  return std::generic_category().message(err);
}

// Splits a normalised path into its segments.
std::vector<std::string> Split(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    out.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos)
      break;
    path = path.substr(slash + 1);
  }
  return out;
}

std::string Join(const std::vector<std::string>& segments, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0)
      out.push_back('/');
    out += segments[i];
  }
  return out;
}

core::Error NotFound(std::string_view path) {
  return core::NotFound(fmt::format("artifact \"{}\" does not exist", internal::Printable(path)));
}

// Why `name` in directory `dir` cannot be entered or opened as wanted.
core::Error Blocked(int dir, const std::string& name, const std::string& shown, int err) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) {
      return core::FailedPrecondition(fmt::format(
          "artifact path \"{}\" is a symbolic link; the store never follows links", shown));
    }
    if (S_ISDIR(st.st_mode))
      return core::FailedPrecondition(fmt::format("artifact path \"{}\" is a directory", shown));
    if (!S_ISREG(st.st_mode)) {
      return core::FailedPrecondition(
          fmt::format("artifact path \"{}\" is not a regular file", shown));
    }
    return core::FailedPrecondition(
        fmt::format("artifact path \"{}\" is a file, not a directory", shown));
  }
  return core::Internal(fmt::format("cannot open artifact path \"{}\": {}", shown, ErrnoText(err)));
}

class LocalStore final : public ArtifactStore {
 public:
  LocalStore(Fd root, std::string describe)
      : root_(std::move(root)), describe_(std::move(describe)) {}

  std::string Describe() const override { return describe_; }

  Status Put(std::string_view raw, std::string_view bytes) override {
    ASSIGN_OR_RETURN(std::string path, NormalizePath(raw));
    std::vector<std::string> segments = Split(path);
    ASSIGN_OR_RETURN(Fd dir, OpenDir(segments, segments.size() - 1, /*create=*/true));
    const std::string& name = segments.back();

    std::string temp = std::string(kTempPrefix) + core::HexEncode(core::RandomBytes(8));
    Fd file(::openat(dir.get(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0644));
    if (!file) {
      return core::Internal(
          fmt::format("cannot write artifact \"{}\": {}", path, ErrnoText(errno)));
    }
    auto fail = [&](std::string_view what, int err) {
      ::unlinkat(dir.get(), temp.c_str(), 0);
      return core::Internal(
          fmt::format("cannot write artifact \"{}\": {}: {}", path, what, ErrnoText(err)));
    };
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(file.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return fail("write", errno);
      done += static_cast<size_t>(n);
    }
    if (::fsync(file.get()) != 0)
      return fail("fsync", errno);
    file.Reset();
    if (::renameat(dir.get(), temp.c_str(), dir.get(), name.c_str()) != 0) {
      int err = errno;
      ::unlinkat(dir.get(), temp.c_str(), 0);
      if (err == EISDIR || err == ENOTEMPTY || err == EEXIST) {
        return core::FailedPrecondition(
            fmt::format("artifact path \"{}\" is a directory; delete it first", path));
      }
      return core::Internal(
          fmt::format("cannot write artifact \"{}\": rename: {}", path, ErrnoText(err)));
    }
    // The rename itself must survive a crash, not just the data.
    ::fsync(dir.get());
    return core::Ok();
  }

  Result<std::string> Get(std::string_view raw) override {
    ASSIGN_OR_RETURN(std::string path, NormalizePath(raw));
    std::vector<std::string> segments = Split(path);
    auto dir = OpenDir(segments, segments.size() - 1, /*create=*/false);
    if (!dir) {
      if (dir.error().code == core::ErrorCode::kNotFound)
        return NotFound(path);
      return std::move(dir).error();
    }
    const std::string& name = segments.back();
    // O_NONBLOCK: opening a FIFO planted in the root must not hang.
    Fd file(::openat(dir->get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!file) {
      int err = errno;
      if (err == ENOENT)
        return NotFound(path);
      return Blocked(dir->get(), name, path, err);
    }
    struct stat st {};
    if (::fstat(file.get(), &st) != 0)
      return core::Internal(fmt::format("cannot read artifact \"{}\": {}", path, ErrnoText(errno)));
    if (S_ISDIR(st.st_mode)) {
      return core::FailedPrecondition(
          fmt::format("artifact path \"{}\" is a directory; list it instead", path));
    }
    if (!S_ISREG(st.st_mode))
      return core::FailedPrecondition(
          fmt::format("artifact path \"{}\" is not a regular file", path));
    std::string out;
    out.reserve(static_cast<size_t>(st.st_size));
    char buf[64 * 1024];
    for (;;) {
      ssize_t n = ::read(file.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        return core::Internal(
            fmt::format("cannot read artifact \"{}\": {}", path, ErrnoText(errno)));
      }
      if (n == 0)
        break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  Result<std::vector<FileInfo>> List(std::string_view raw) override {
    ASSIGN_OR_RETURN(std::string path, internal::NormalizeDir(raw, "path"));
    std::vector<std::string> segments = Split(path);
    auto dir = OpenDir(segments, segments.size(), /*create=*/false);
    if (!dir) {
      // Missing, a file, or a link: nothing to list there.
      if (dir.error().code == core::ErrorCode::kNotFound ||
          dir.error().code == core::ErrorCode::kFailedPrecondition) {
        return std::vector<FileInfo>();
      }
      return std::move(dir).error();
    }
    ASSIGN_OR_RETURN(std::vector<std::string> names, ReadNames(dir->get(), path));
    std::vector<FileInfo> out;
    for (const std::string& name : names) {
      if (!internal::ValidSegment(name, path.empty()))
        continue;
      struct stat st {};
      if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        continue;  // removed meanwhile
      if (S_ISDIR(st.st_mode)) {
        out.push_back({name, true, 0});
      } else if (S_ISREG(st.st_mode)) {
        out.push_back({name, false, static_cast<int64_t>(st.st_size)});
      }
      // Links and special files are never shown.
    }
    std::sort(out.begin(), out.end(),
              [](const FileInfo& a, const FileInfo& b) { return a.path < b.path; });
    return out;
  }

  Status Delete(std::string_view raw) override {
    ASSIGN_OR_RETURN(std::string path, NormalizePath(raw));
    std::vector<std::string> segments = Split(path);
    auto dir = OpenDir(segments, segments.size() - 1, /*create=*/false);
    if (!dir) {
      if (dir.error().code == core::ErrorCode::kNotFound ||
          dir.error().code == core::ErrorCode::kFailedPrecondition) {
        return NotFound(path);
      }
      return std::move(dir).error();
    }
    const std::string& name = segments.back();
    struct stat st {};
    if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT)
        return NotFound(path);
      return core::Internal(
          fmt::format("cannot delete artifact \"{}\": {}", path, ErrnoText(errno)));
    }
    if (S_ISDIR(st.st_mode))
      return RemoveTree(dir->get(), name, path);
    // A link is removed itself; what it points to is untouched.
    if (::unlinkat(dir->get(), name.c_str(), 0) != 0) {
      if (errno == ENOENT)
        return NotFound(path);
      return core::Internal(
          fmt::format("cannot delete artifact \"{}\": {}", path, ErrnoText(errno)));
    }
    return core::Ok();
  }

 private:
  // Opens the directory made of the first `n` segments, below the root,
  // never following a link. With `create`, makes missing directories.
  // kNotFound when one is missing; kFailedPrecondition when a file, link or
  // special file is in the way.
  Result<Fd> OpenDir(const std::vector<std::string>& segments, size_t n, bool create) const {
    Fd dir(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
    if (!dir)
      return core::Internal(fmt::format("cannot open the artifact root: {}", ErrnoText(errno)));
    for (size_t i = 0; i < n; ++i) {
      const std::string& name = segments[i];
      const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
      Fd next(::openat(dir.get(), name.c_str(), flags));
      if (!next && errno == ENOENT && create) {
        if (::mkdirat(dir.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
          return core::Internal(fmt::format("cannot create artifact directory \"{}\": {}",
                                            Join(segments, i + 1), ErrnoText(errno)));
        }
        next = Fd(::openat(dir.get(), name.c_str(), flags));
      }
      if (!next) {
        int err = errno;
        std::string shown = Join(segments, i + 1);
        if (err == ENOENT)
          return core::NotFound(fmt::format("artifact directory \"{}\" does not exist", shown));
        return Blocked(dir.get(), name, shown, err);
      }
      dir = std::move(next);
    }
    return dir;
  }

  // The names in directory `dir` (a descriptor this call does not take).
  static Result<std::vector<std::string>> ReadNames(int dir, std::string_view shown) {
    int copy = ::fcntl(dir, F_DUPFD_CLOEXEC, 0);
    DIR* stream = copy >= 0 ? ::fdopendir(copy) : nullptr;
    if (stream == nullptr) {
      int err = errno;
      if (copy >= 0)
        ::close(copy);
      return core::Internal(
          fmt::format("cannot list artifact directory \"{}\": {}", shown, ErrnoText(err)));
    }
    std::vector<std::string> names;
    while (dirent* entry = ::readdir(stream)) {
      std::string_view name = entry->d_name;
      if (name != "." && name != "..")
        names.emplace_back(name);
    }
    ::closedir(stream);
    return names;
  }

  // Removes directory `name` in `parent` and everything below it. Links
  // inside are unlinked, never followed.
  static Status RemoveTree(int parent, const std::string& name, const std::string& shown) {
    Fd dir(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) {
      return core::Internal(
          fmt::format("cannot delete artifact directory \"{}\": {}", shown, ErrnoText(errno)));
    }
    ASSIGN_OR_RETURN(std::vector<std::string> names, ReadNames(dir.get(), shown));
    for (const std::string& child : names) {
      struct stat st {};
      if (::fstatat(dir.get(), child.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        continue;
      if (S_ISDIR(st.st_mode)) {
        RETURN_IF_ERROR(RemoveTree(dir.get(), child, shown + "/" + child));
      } else if (::unlinkat(dir.get(), child.c_str(), 0) != 0 && errno != ENOENT) {
        return core::Internal(fmt::format("cannot delete artifact \"{}/{}\": {}", shown,
                                          internal::Printable(child), ErrnoText(errno)));
      }
    }
    if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return core::Internal(
          fmt::format("cannot delete artifact directory \"{}\": {}", shown, ErrnoText(errno)));
    }
    return core::Ok();
  }

  const Fd root_;
  const std::string describe_;
};

}  // namespace

Result<std::unique_ptr<ArtifactStore>> OpenLocal(std::filesystem::path root) {
  if (root.empty())
    return core::InvalidArgument("artifact root must not be empty", "artifacts.root");
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(root, ec).lexically_normal();
  if (ec)
    absolute = root;
  std::filesystem::create_directories(absolute, ec);
  if (ec) {
    return core::FailedPrecondition(
        fmt::format("cannot create the artifact root {}: {}", absolute.string(), ec.message()));
  }
  Fd fd(::open(absolute.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return core::FailedPrecondition(
        fmt::format("cannot open the artifact root {}: {}", absolute.string(), ErrnoText(errno)));
  }
  std::string describe = "file:" + absolute.string();
  if (describe.size() > 6 && describe.back() == '/')
    describe.pop_back();
  return std::unique_ptr<ArtifactStore>(new LocalStore(std::move(fd), std::move(describe)));
}

}  // namespace kervan::artifacts

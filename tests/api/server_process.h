// A real `kervan server` process for HTTP-level tests: forked and exec'd from
// the built binary (KERVAN_BIN) on an ephemeral port, in a fresh temp data
// dir, stopped with SIGTERM (graceful) or SIGKILL (crash). Start() again
// after Stop() restarts it on the same data dir (and the same PostgreSQL
// database), which is what durability tests need.
//
// For the PostgreSQL backend each ServerProcess gets its own database,
// created from the admin DSN (KERVAN_TEST_PG_DSN) as kervan_api_<random> and
// dropped WITH (FORCE) when the ServerProcess is destroyed.
//
// Not thread-safe: drive one ServerProcess from the test's main thread. url()
// and port() may be read from client threads while it runs.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "http/http.h"
#include "store/store.h"

#ifndef KERVAN_BIN
#error "KERVAN_BIN must name the kervan binary (set by tests/api/CMakeLists.txt)"
#endif

extern char** environ;

namespace kervan::apitest {

inline std::string RandomSuffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  return std::to_string(rng() % 1000000000000ULL);
}

inline bool EnvIs(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::string(v) == value;
}

// The admin DSN for PostgreSQL tests, or nullopt when KERVAN_TEST_PG_DSN is
// unset. Callers skip loudly then, or fail when KERVAN_REQUIRE_PG=1; see
// KERVAN_PG_DSN_OR_SKIP.
inline std::optional<std::string> PgAdminDsn() {
  const char* dsn = std::getenv("KERVAN_TEST_PG_DSN");
  if (dsn == nullptr || *dsn == '\0')
    return std::nullopt;
  return std::string(dsn);
}

// In a TEST body: declares `std::string var` holding the admin DSN, or skips
// the test loudly (fails under KERVAN_REQUIRE_PG=1) when there is none.
#define KERVAN_PG_DSN_OR_SKIP(var)                                                            \
  std::string var;                                                                            \
  do {                                                                                        \
    auto dsn_ = ::kervan::apitest::PgAdminDsn();                                              \
    if (!dsn_) {                                                                              \
      if (::kervan::apitest::EnvIs("KERVAN_REQUIRE_PG", "1")) {                               \
        FAIL() << "KERVAN_REQUIRE_PG=1 but KERVAN_TEST_PG_DSN is not set";                    \
      }                                                                                       \
      GTEST_SKIP() << "\n*** SKIPPING PostgreSQL API test: KERVAN_TEST_PG_DSN not set. Run "  \
                      "the project's test command (starts a real PostgreSQL) to include it. " \
                      "***";                                                                  \
    }                                                                                         \
    var = *dsn_;                                                                              \
  } while (0)

enum class Backend { kSqlite, kPostgres };

// For test names and messages: "sqlite", "postgres".
inline void PrintTo(Backend backend, std::ostream* os) {
  *os << (backend == Backend::kSqlite ? "sqlite" : "postgres");
}

struct ServerProcessOptions {
  Backend backend = Backend::kSqlite;
  // Admin DSN (key=value form); required for kPostgres.
  std::string pg_admin_dsn;
  // Appended to the command line, e.g. {"--set", "server.max_body_bytes=2048"}.
  std::vector<std::string> extra_args;
  std::chrono::milliseconds ready_timeout{15000};
};

class ServerProcess {
 public:
  explicit ServerProcess(ServerProcessOptions options = {}) : options_(std::move(options)) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kervan-api-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr)
      dir_ = buf.data();
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  ~ServerProcess() {
    if (running())
      (void)Stop(/*kill=*/true);
    DropDatabase();
    if (!dir_.empty() && !EnvIs("KERVAN_TEST_KEEP", "1")) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // Starts the server (creating the PostgreSQL database the first time) and
  // waits until it wrote its ready file. On failure the message holds the
  // tail of the server's stderr.
  ::testing::AssertionResult Start() {
    if (dir_.empty())
      return ::testing::AssertionFailure() << "mkdtemp failed";
    if (running())
      return ::testing::AssertionFailure() << "already running";
    if (options_.backend == Backend::kPostgres && dbname_.empty()) {
      if (auto r = CreateDatabase(); !r)
        return r;
    }
    std::filesystem::path ready = dir_ / "port";
    std::error_code ec;
    std::filesystem::remove(ready, ec);

    std::vector<std::string> args = {KERVAN_BIN, "server", "--data-dir",   dir_.string(),
                                     "--port",   "0",      "--ready-file", ready.string()};
    if (options_.backend == Backend::kPostgres) {
      args.insert(args.end(),
                  {"--set", "store.backend=postgres", "--set",
                   "store.postgres.dsn=" + options_.pg_admin_dsn + " dbname=" + dbname_});
    }
    args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
    // Everything the child needs is prepared before fork(): after it, the
    // child of a multi-threaded process may only call async-signal-safe code.
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    // A developer's KERVAN_* settings must not leak into the server's config.
    std::vector<char*> envp;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "KERVAN_", 7) != 0)
        envp.push_back(*e);
    }
    envp.push_back(nullptr);
    std::string log_path = (dir_ / "server.log").string();
    int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      return ::testing::AssertionFailure()
             << "cannot open " << log_path << ": " << std::strerror(errno);
    }
    log_offset_ = static_cast<size_t>(::lseek(log_fd, 0, SEEK_END));

    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);
    }
    if (pid == 0) {
      int null_fd = ::open("/dev/null", O_RDONLY);
      if (null_fd >= 0)
        ::dup2(null_fd, STDIN_FILENO);
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      ::execve(argv[0], argv.data(), envp.data());
      static constexpr char kMsg[] = "exec of kervan binary failed\n";
      (void)!::write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
      ::_exit(127);
    }
    ::close(log_fd);
    pid_ = pid;

    auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return ::testing::AssertionFailure() << "kervan server exited before it was ready ("
                                             << DescribeStatus(status) << "); stderr tail:\n"
                                             << StderrTail();
      }
      std::ifstream in(ready);
      int port = 0;
      if (in >> port && port > 0) {
        port_ = port;
        url_ = "http://127.0.0.1:" + std::to_string(port);
        return ::testing::AssertionSuccess();
      }
      if (std::chrono::steady_clock::now() > deadline) {
        (void)Stop(/*kill=*/true);
        return ::testing::AssertionFailure()
               << "kervan server not ready within " << options_.ready_timeout.count()
               << " ms; stderr tail:\n"
               << StderrTail();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // SIGTERM (graceful; waits up to `timeout`, then SIGKILLs and fails) or
  // SIGKILL. On success `exit_status` (if given) receives waitpid's status.
  ::testing::AssertionResult Stop(bool kill = false,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(20),
                                  int* exit_status = nullptr) {
    if (!running())
      return ::testing::AssertionFailure() << "not running";
    ::kill(pid_, kill ? SIGKILL : SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (;;) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_)
        break;
      if (r < 0) {
        pid_ = -1;
        return ::testing::AssertionFailure() << "waitpid: " << std::strerror(errno);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return ::testing::AssertionFailure() << "kervan server did not exit within "
                                             << timeout.count() << " ms of SIGTERM; stderr tail:\n"
                                             << StderrTail();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    port_ = 0;
    if (exit_status != nullptr)
      *exit_status = status;
    return ::testing::AssertionSuccess();
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& url() const { return url_; }
  // A client that sends the bootstrap admin's token (read from
  // <data_dir>/admin.token, written by the server's first start).
  http::Client client() const {
    std::string token = admin_token();
    if (token.empty())
      return http::Client(url_);
    return http::Client(url_, {{"Authorization", "Bearer " + token}});
  }
  // A client that sends no credentials.
  http::Client anonymous_client() const { return http::Client(url_); }
  // A client that sends `token`.
  http::Client client_with_token(const std::string& token) const {
    return http::Client(url_, {{"Authorization", "Bearer " + token}});
  }
  // The bootstrap admin token; "" when the file does not exist (yet).
  std::string admin_token() const {
    std::ifstream in(dir_ / "admin.token");
    std::string token;
    std::getline(in, token);
    return token;
  }
  const std::filesystem::path& data_dir() const { return dir_; }
  // The database name (PostgreSQL backend; empty before the first Start()).
  const std::string& dbname() const { return dbname_; }

  // The last `max_lines` lines the server wrote to stderr since the latest
  // Start() (its log is JSON lines).
  std::string StderrTail(size_t max_lines = 30) const {
    std::ifstream in(dir_ / "server.log", std::ios::binary);
    if (!in)
      return "(no server log)";
    in.seekg(static_cast<std::streamoff>(log_offset_));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
      lines.push_back(std::move(line));
      if (lines.size() > max_lines)
        lines.erase(lines.begin());
    }
    std::string out;
    for (const auto& l : lines)
      out += "  | " + l + "\n";
    return out.empty() ? "(empty)" : out;
  }

  static std::string DescribeStatus(int status) {
    if (WIFEXITED(status))
      return "exit code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
      return "killed by signal " + std::to_string(WTERMSIG(status));
    return "status " + std::to_string(status);
  }

 private:
  ::testing::AssertionResult CreateDatabase() {
    if (options_.pg_admin_dsn.empty()) {
      return ::testing::AssertionFailure() << "Backend::kPostgres needs pg_admin_dsn";
    }
    auto admin = store::OpenPostgres({.dsn = options_.pg_admin_dsn, .pool_size = 1});
    if (!admin)
      return ::testing::AssertionFailure() << admin.error().ToString();
    auto conn = (*admin)->Acquire();
    if (!conn)
      return ::testing::AssertionFailure() << conn.error().ToString();
    std::string name = "kervan_api_" + RandomSuffix();
    auto r = (*conn)->Exec("CREATE DATABASE " + name);
    if (!r)
      return ::testing::AssertionFailure() << r.error().ToString();
    dbname_ = name;
    return ::testing::AssertionSuccess();
  }

  void DropDatabase() {
    if (dbname_.empty() || EnvIs("KERVAN_TEST_KEEP", "1"))
      return;
    auto admin = store::OpenPostgres({.dsn = options_.pg_admin_dsn, .pool_size = 1});
    if (!admin) {
      ADD_FAILURE() << "cannot drop database " << dbname_ << ": " << admin.error().ToString();
      return;
    }
    auto conn = (*admin)->Acquire();
    if (!conn)
      return;
    auto r = (*conn)->Exec("DROP DATABASE IF EXISTS " + dbname_ + " WITH (FORCE)");
    if (!r)
      ADD_FAILURE() << "cannot drop database " << dbname_ << ": " << r.error().ToString();
    dbname_.clear();
  }

  ServerProcessOptions options_;
  std::filesystem::path dir_;
  std::string dbname_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string url_;
  size_t log_offset_ = 0;
};

}  // namespace kervan::apitest

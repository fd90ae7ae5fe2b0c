// `kervan job-shim`: the supervisor the local executor runs each attempt
// under. It is the leader of the attempt's own session and process group,
// runs the command as its child, and writes the child's exit status to a
// file (atomically) before it exits — so a server that restarted in the
// meantime can still tell how the attempt ended.
//
//   kervan job-shim --exit-file F --log L [--cwd D] -- program args...
//
// SIGTERM/SIGINT/SIGHUP reach the whole group (the server signals the group);
// the shim itself ignores them and keeps waiting for its child, so the exit
// status is recorded whenever the command stops on such a signal. SIGKILL
// stops both, and then there is no exit file: the executor knows whether it
// asked for that.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs/jobs.h"

namespace kervan::jobs {
namespace {

void Ignore(int) {}

bool WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

int ShimUsage(const char* why) {
  std::fprintf(
      stderr,
      "kervan job-shim: %s\n"
      "usage: kervan job-shim --exit-file FILE --log FILE [--cwd DIR] -- PROGRAM [ARGS...]\n"
      "(run by the local executor; not meant to be called by hand)\n",
      why);
  return 2;
}

}  // namespace

int RunJobShim(int argc, char** argv) {
  std::string exit_file, log_file, cwd;
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc)
      return ShimUsage(("missing value for " + arg).c_str());
    if (arg == "--exit-file")
      exit_file = argv[++i];
    else if (arg == "--log")
      log_file = argv[++i];
    else if (arg == "--cwd")
      cwd = argv[++i];
    else
      return ShimUsage(("unknown option " + arg).c_str());
  }
  if (exit_file.empty() || log_file.empty() || i >= argc)
    return ShimUsage("--exit-file, --log and a program after -- are required");

  int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    std::fprintf(stderr, "kervan job-shim: cannot open log %s: %s\n", log_file.c_str(),
                 std::strerror(errno));
    return 2;
  }
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  int null_fd = ::open("/dev/null", O_RDONLY);
  if (null_fd >= 0)
    ::dup2(null_fd, STDIN_FILENO);

  struct sigaction ignore {};
  ignore.sa_handler = Ignore;
  sigemptyset(&ignore.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP})
    ::sigaction(sig, &ignore, nullptr);

  pid_t child = ::fork();
  if (child < 0) {
    std::fprintf(stderr, "kervan job-shim: fork: %s\n", std::strerror(errno));
    return 2;
  }
  if (child == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGTERM, SIGINT, SIGHUP})
      ::sigaction(sig, &dfl, nullptr);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      std::fprintf(stderr, "kervan job-shim: cannot enter working directory %s: %s\n", cwd.c_str(),
                   std::strerror(errno));
      ::_exit(126);
    }
    ::execvp(argv[i], argv + i);
    std::fprintf(stderr, "kervan job-shim: cannot run %s: %s\n", argv[i], std::strerror(errno));
    ::_exit(127);
  }

  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR)
      return 2;
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  std::string tmp = exit_file + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd >= 0) {
    bool ok = WriteAll(fd, "{\"exit_code\":" + std::to_string(code) +
                               ",\"signal\":" + std::to_string(sig) + "}\n");
    ok = ::fsync(fd) == 0 && ok;
    ::close(fd);
    if (ok)
      ::rename(tmp.c_str(), exit_file.c_str());
  }
  return sig != 0 ? 128 + sig : code;
}

}  // namespace kervan::jobs

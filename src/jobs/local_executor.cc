// The local executor: each attempt is `kervan job-shim` (shim.cc) leading a
// session and process group of its own, with the command as its child.
// Cancel and preemption signal the whole group: SIGTERM, then SIGKILL after
// the grace period. The attempt's id is "<pid>:<start time>" (the start time
// from /proc guards against a reused pid when a restarted server adopts it).
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "jobs/internal.h"

extern char** environ;

namespace kervan::jobs {
namespace {

namespace fs = std::filesystem;

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); 0
// when the process does not exist (or is a zombie: field 3 == 'Z').
uint64_t ProcessStartTime(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(in, line))
    return 0;
  // The command name (field 2) is in parentheses and may hold spaces.
  size_t close = line.rfind(')');
  if (close == std::string::npos)
    return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string state;
  rest >> state;
  if (state == "Z" || state == "X")
    return 0;
  std::string field;
  for (int i = 4; i < 22; ++i)
    rest >> field;
  uint64_t start = 0;
  rest >> start;
  return start;
}

// The environment the attempt starts with: a few variables of the server's
// (so PATH lookups and locales work as on the command line) plus the spec's.
std::vector<std::string> AttemptEnvironment(const LaunchSpec& spec) {
  std::map<std::string, std::string> env;
  for (const char* keep : {"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"}) {
    if (const char* v = std::getenv(keep))
      env[keep] = v;
  }
  for (const auto& [k, v] : spec.env)
    env[k] = v;
  env["CUDA_VISIBLE_DEVICES"] = GpuList(spec.allocation);
  std::vector<std::string> out;
  for (const auto& [k, v] : env)
    out.push_back(k + "=" + v);
  return out;
}

struct Process {
  std::string job_id;
  int attempt = 0;
  pid_t pid = 0;
  uint64_t start_time = 0;
  bool own_child = true;  // false: adopted after a restart (we cannot waitpid it)
  bool terminate_requested = false;
  int64_t kill_at_us = 0;  // SIGKILL then, once terminate_requested
  bool ended = false;      // adopted already ended: report on the next Poll
  std::string exit_file;
  int wait_status = -1;  // own child's status from waitpid, -1 unknown
};

class LocalExecutor final : public Executor {
 public:
  explicit LocalExecutor(LocalExecutorOptions options) : options_(std::move(options)) {
    if (options_.shim_path.empty()) {
      std::error_code ec;
      options_.shim_path = fs::read_symlink("/proc/self/exe", ec).string();
    }
  }

  std::string_view name() const override { return "local"; }

  Result<std::vector<Node>> DiscoverNodes() override {
    Node node;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    node.name = options_.node_name.empty() ? std::string(host) : options_.node_name;
    node.cpus = static_cast<int>(std::thread::hardware_concurrency());
    long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0)
      node.memory_mb = static_cast<int64_t>(pages) * page / (1024 * 1024);
    auto gpus = QueryNvidiaSmi();
    if (gpus && !gpus->empty()) {
      node.gpus = static_cast<int>(gpus->size());
      node.gpu_type = gpus->front();
    } else {
      node.gpus = options_.virtual_gpus;
    }
    return std::vector<Node>{node};
  }

  Result<std::string> Launch(const LaunchSpec& spec) override {
    std::error_code ec;
    fs::create_directories(StateDir(), ec);
    if (ec)
      return core::Internal(fmt::format("cannot create {}: {}", StateDir(), ec.message()));
    std::string exit_file = ExitFile(spec.job_id, spec.attempt);
    fs::remove(exit_file, ec);
    std::string cwd = spec.working_dir.empty() ? spec.scratch_dir : spec.working_dir;

    std::vector<std::string> args = {options_.shim_path, "job-shim", "--exit-file",
                                     exit_file,          "--log",    spec.log_path};
    if (!cwd.empty()) {
      args.push_back("--cwd");
      args.push_back(cwd);
    }
    args.push_back("--");
    args.insert(args.end(), spec.command.begin(), spec.command.end());
    std::vector<std::string> env = AttemptEnvironment(spec);
    // Everything the child touches is prepared before fork: after it only
    // async-signal-safe calls happen (the server is multi-threaded).
    std::vector<char*> argv, envp;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env)
      envp.push_back(e.data());
    envp.push_back(nullptr);

    pid_t pid = ::fork();
    if (pid < 0)
      return core::Internal(fmt::format("fork: {}", std::strerror(errno)));
    if (pid == 0) {
      ::setsid();
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    uint64_t start = 0;
    for (int i = 0; i < 50 && start == 0; ++i) {
      start = ProcessStartTime(pid);
      if (start == 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string id = fmt::format("{}:{}", pid, start);
    std::lock_guard lock(mu_);
    procs_[id] = Process{.job_id = spec.job_id,
                         .attempt = spec.attempt,
                         .pid = pid,
                         .start_time = start,
                         .exit_file = exit_file};
    return id;
  }

  Status Terminate(const std::string& external_id, std::chrono::milliseconds grace) override {
    std::lock_guard lock(mu_);
    auto it = procs_.find(external_id);
    if (it == procs_.end())
      return core::NotFound(fmt::format("no running local attempt {}", external_id));
    Process& p = it->second;
    if (!p.terminate_requested) {
      p.terminate_requested = true;
      p.kill_at_us =
          core::NowMicros() + std::chrono::duration_cast<std::chrono::microseconds>(grace).count();
      if (!p.ended)
        ::killpg(p.pid, SIGTERM);
    }
    return core::Ok();
  }

  std::vector<ExitReport> Poll() override {
    std::vector<ExitReport> out;
    std::lock_guard lock(mu_);
    int64_t now = core::NowMicros();
    for (auto it = procs_.begin(); it != procs_.end();) {
      Process& p = it->second;
      if (!p.ended)
        p.ended = HasEnded(p);
      if (!p.ended) {
        if (p.terminate_requested && now >= p.kill_at_us)
          ::killpg(p.pid, SIGKILL);
        ++it;
        continue;
      }
      // The shim is gone; whatever is left of its group goes with it.
      ::killpg(p.pid, SIGKILL);
      out.push_back(Report(it->first, p));
      std::error_code ec;
      fs::remove(p.exit_file, ec);
      it = procs_.erase(it);
    }
    return out;
  }

  Result<bool> Adopt(const std::string& job_id, int attempt,
                     const std::string& external_id) override {
    pid_t pid = 0;
    uint64_t start = 0;
    if (std::sscanf(external_id.c_str(), "%d:%lu", &pid, &start) != 2 || pid <= 0)
      return core::InvalidArgument(fmt::format("not a local attempt id: \"{}\"", external_id));
    Process p{.job_id = job_id,
              .attempt = attempt,
              .pid = pid,
              .start_time = start,
              .own_child = false,
              .exit_file = ExitFile(job_id, attempt)};
    bool alive = start != 0 && ProcessStartTime(pid) == start;
    std::error_code ec;
    if (!alive) {
      if (!fs::exists(p.exit_file, ec))
        return false;
      p.ended = true;
    }
    std::lock_guard lock(mu_);
    procs_[external_id] = std::move(p);
    return true;
  }

 private:
  std::string StateDir() const { return options_.state_dir; }
  std::string ExitFile(const std::string& job_id, int attempt) const {
    return fmt::format("{}/{}-{}.exit", StateDir(), job_id, attempt);
  }

  bool HasEnded(Process& p) {
    if (p.own_child) {
      int status = 0;
      pid_t r = ::waitpid(p.pid, &status, WNOHANG);
      if (r == p.pid) {
        p.wait_status = status;
        return true;
      }
      return r < 0 && errno == ECHILD;
    }
    return ProcessStartTime(p.pid) != p.start_time;
  }

  ExitReport Report(const std::string& id, const Process& p) {
    ExitReport r{.job_id = p.job_id, .attempt = p.attempt, .external_id = id};
    std::ifstream in(p.exit_file);
    std::stringstream text;
    text << in.rdbuf();
    Json status = Json::parse(text.str(), nullptr, false);
    if (status.is_object()) {
      r.exit_code = status.value("exit_code", -1);
      r.signal = status.value("signal", 0);
      if (r.exit_code == 0 && r.signal == 0) {
        r.kind = ExitKind::kSucceeded;
      } else if (p.terminate_requested) {
        r.kind = ExitKind::kTerminated;
        r.detail = r.signal
                       ? fmt::format("stopped by signal {} on request", r.signal)
                       : fmt::format("exited with status {} after a stop request", r.exit_code);
      } else {
        r.kind = ExitKind::kFailed;
        r.detail = r.signal
                       ? fmt::format("killed by signal {} ({})", r.signal, ::strsignal(r.signal))
                       : fmt::format("exited with status {}", r.exit_code);
      }
      return r;
    }
    if (p.terminate_requested) {
      r.kind = ExitKind::kTerminated;
      r.signal = SIGKILL;
      r.detail = "killed after the grace period";
    } else if (p.wait_status >= 0 && WIFEXITED(p.wait_status)) {
      // The shim itself failed before running the command (its message is in the log).
      r.kind = ExitKind::kFailed;
      r.exit_code = WEXITSTATUS(p.wait_status);
      r.detail = fmt::format("the job supervisor exited with status {} (see the log)", r.exit_code);
    } else if (p.wait_status >= 0 && WIFSIGNALED(p.wait_status)) {
      r.kind = ExitKind::kFailed;
      r.signal = WTERMSIG(p.wait_status);
      r.detail = fmt::format("killed by signal {} ({})", r.signal, ::strsignal(r.signal));
    } else {
      r.kind = ExitKind::kLost;
      r.detail = "the process ended without recording an exit status";
    }
    return r;
  }

  // GPU model names from nvidia-smi, one per GPU; nullopt without nvidia-smi.
  static std::optional<std::vector<std::string>> QueryNvidiaSmi() {
    FILE* pipe =
        ::popen("nvidia-smi --query-gpu=index,name --format=csv,noheader 2>/dev/null", "r");
    if (!pipe)
      return std::nullopt;
    std::vector<std::string> names;
    char line[512];
    while (std::fgets(line, sizeof line, pipe)) {
      std::string l(line);
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r'))
        l.pop_back();
      size_t comma = l.find(',');
      if (comma == std::string::npos)
        continue;
      std::string name = l.substr(comma + 1);
      while (!name.empty() && name.front() == ' ')
        name.erase(name.begin());
      names.push_back(name);
    }
    int rc = ::pclose(pipe);
    if (rc != 0)
      return std::nullopt;
    return names;
  }

  LocalExecutorOptions options_;
  std::mutex mu_;
  std::map<std::string, Process> procs_;
};

}  // namespace

std::unique_ptr<Executor> MakeLocalExecutor(LocalExecutorOptions options) {
  return std::make_unique<LocalExecutor>(std::move(options));
}

}  // namespace kervan::jobs

// The Slurm executor: one attempt = one batch job submitted with sbatch.
// Kervan's scheduler decides admission (what runs, and what is preempted to
// make room); Slurm only places the job on a node and runs it. The batch
// script is written into the attempt's scratch dir; the job's end is read
// from `squeue --json` (Slurm keeps ended jobs for MinJobAge) and, for jobs
// Slurm has already forgotten, from the jobcomp/filetxt log.
//
// Also home of RunTool, which kubernetes.cc uses as well.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "jobs/cluster_tools.h"

extern char** environ;

namespace kervan::jobs {
namespace internal {
namespace {

using Clock = std::chrono::steady_clock;

std::string CommandLine(const std::vector<std::string>& argv) {
  std::string line;
  for (const auto& a : argv) {
    if (!line.empty())
      line += ' ';
    bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("-_=./:,%@+", c);
    });
    line += plain ? a : ShellQuote(a);
  }
  return line;
}

// Closes the fds it holds when it goes out of scope.
struct Fds {
  std::vector<int> fds;
  ~Fds() {
    for (int fd : fds)
      if (fd >= 0)
        ::close(fd);
  }
  void Close(int& fd) {
    if (fd >= 0) {
      ::close(fd);
      for (int& f : fds)
        if (f == fd)
          f = -1;
      fd = -1;
    }
  }
};

// Blocks SIGPIPE in this thread while it lives (a tool that exits before
// reading its stdin must not kill the server), then drops a pending one.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SigpipeGuard() {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) && !sigismember(&old_, SIGPIPE)) {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      timespec zero{0, 0};
      sigtimedwait(&set, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
};

}  // namespace

std::string ShellQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

Result<ToolOutput> RunTool(const ToolRun& run) {
  if (run.argv.empty() || run.argv[0].empty())
    return core::Internal("RunTool: empty argv");
  const std::string what = CommandLine(run.argv);

  // The environment: this process's (unless cleared) with run.env on top.
  std::map<std::string, std::string> env_map;
  if (!run.clear_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      if (eq != std::string_view::npos)
        env_map.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  for (const auto& [k, v] : run.env) {
    if (v.empty() && !run.clear_env)
      env_map.erase(k);
    else
      env_map[k] = v;
  }
  std::vector<std::string> env_strings;
  env_strings.reserve(env_map.size());
  for (const auto& [k, v] : env_map)
    env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = run.argv;
  std::vector<char*> argv;
  for (auto& a : argv_copy)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0)
    return core::Internal(fmt::format("{}: pipe: {}", what, std::strerror(errno)));
  Fds fds{{in[0], in[1]}};
  if (::pipe2(out, O_CLOEXEC) != 0)
    return core::Internal(fmt::format("{}: pipe: {}", what, std::strerror(errno)));
  fds.fds.insert(fds.fds.end(), {out[0], out[1]});
  if (::pipe2(err, O_CLOEXEC) != 0)
    return core::Internal(fmt::format("{}: pipe: {}", what, std::strerror(errno)));
  fds.fds.insert(fds.fds.end(), {err[0], err[1]});

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group, killed whole on timeout
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const bool search = run.argv[0].find('/') == std::string::npos;
  int rc = search ? ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data())
                  : ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return core::Unavailable(fmt::format("cannot run {}: {}", run.argv[0], std::strerror(rc)));
  }
  fds.Close(in[0]);
  fds.Close(out[1]);
  fds.Close(err[1]);

  SigpipeGuard sigpipe_guard;
  const auto deadline = Clock::now() + run.timeout;
  ToolOutput result;
  size_t written = 0;
  if (run.input.empty())
    fds.Close(in[1]);
  else
    ::fcntl(in[1], F_SETFL, ::fcntl(in[1], F_GETFL) | O_NONBLOCK);
  bool timed_out = false;
  while (out[0] >= 0 || err[0] >= 0 || in[1] >= 0) {
    pollfd p[3];
    int n = 0;
    if (out[0] >= 0)
      p[n++] = {out[0], POLLIN, 0};
    if (err[0] >= 0)
      p[n++] = {err[0], POLLIN, 0};
    if (in[1] >= 0)
      p[n++] = {in[1], POLLOUT, 0};
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    int ready = ::poll(p, n, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno != EINTR)
      break;
    if (ready <= 0)
      continue;
    for (int i = 0; i < n; ++i) {
      if (p[i].revents == 0)
        continue;
      if (p[i].fd == in[1]) {
        ssize_t w = ::write(in[1], run.input.data() + written, run.input.size() - written);
        if (w > 0)
          written += static_cast<size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == run.input.size())
          fds.Close(in[1]);
        continue;
      }
      char buf[65536];
      ssize_t r = ::read(p[i].fd, buf, sizeof buf);
      if (r > 0) {
        (p[i].fd == out[0] ? result.out : result.err).append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        fds.Close(p[i].fd == out[0] ? out[0] : err[0]);
      }
    }
  }

  int status = 0;
  for (;;) {
    if (timed_out) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return core::Error{core::ErrorCode::kDeadlineExceeded,
                         fmt::format("{} did not finish within {} ms", what, run.timeout.count())};
    }
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR)
      return core::Internal(fmt::format("{}: waitpid: {}", what, std::strerror(errno)));
    if (Clock::now() >= deadline)
      timed_out = true;
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

Result<std::string> RunToolChecked(const ToolRun& run) {
  ASSIGN_OR_RETURN(ToolOutput output, RunTool(run));
  if (output.exit_code == 0)
    return std::move(output.out);
  std::string err = output.err;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' '))
    err.pop_back();
  if (err.size() > 2000)
    err = err.substr(0, 2000) + "...";
  std::string status = output.signal != 0 ? fmt::format("was killed by signal {}", output.signal)
                                          : fmt::format("exited with status {}", output.exit_code);
  return core::Unavailable(
      fmt::format("{} {}{}{}", CommandLine(run.argv), status, err.empty() ? "" : ": ", err));
}

// ---- Slurm: building the job ---------------------------------------------

namespace {

bool IsShellName(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// Slurm replaces %j, %u, ... in --output/--error file names; %% is a '%'.
std::string EscapePercent(std::string_view path) {
  std::string out;
  for (char c : path) {
    out += c;
    if (c == '%')
      out += '%';
  }
  return out;
}

// A job name Slurm shows as is: no spaces, commas or control characters.
std::string SlurmJobName(const LaunchSpec& spec) {
  std::string name = spec.name.empty() ? "kervan-" + spec.job_id : spec.name;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && !std::strchr("-_.", c))
      c = '_';
  }
  if (name.size() > 128)
    name.resize(128);
  return name;
}

int64_t CeilDiv(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

Result<std::string> SlurmBatchScript(const LaunchSpec& spec) {
  if (spec.command.empty() || spec.command[0].empty())
    return core::InvalidArgument("must not be empty", "command");
  std::string script = "#!/bin/sh\n";
  script += fmt::format("# Kervan job {}, attempt {}: written by Kervan's Slurm executor.\n",
                        spec.job_id, spec.attempt);
  // srun inside the job inherits the job's environment, not sbatch's export mode.
  script += "export SLURM_EXPORT_ENV=ALL\n";
  for (const auto& [name, value] : spec.env) {
    if (!IsShellName(name)) {
      return core::InvalidArgument(
          fmt::format("\"{}\" is not a valid environment variable name for Slurm jobs "
                      "(letters, digits and _, not starting with a digit)",
                      name),
          "env");
    }
    script += fmt::format("export {}={}\n", name, ShellQuote(value));
  }
  const std::string& dir = spec.working_dir.empty() ? spec.scratch_dir : spec.working_dir;
  if (!dir.empty())
    script += fmt::format("cd {} || exit 1\n", ShellQuote(dir));
  script += "exec";
  for (const auto& arg : spec.command)
    script += " " + ShellQuote(arg);
  script += "\n";
  return script;
}

Result<std::vector<std::string>> SbatchArgs(const LaunchSpec& spec, const SlurmOptions& options,
                                            const std::string& script_path) {
  const Resources& r = spec.resources;
  const int nodes = std::max(1, r.nodes);
  if (r.gpus < 0 || r.gpus % nodes != 0) {
    return core::InvalidArgument(
        fmt::format("{} GPUs do not split evenly over {} nodes", r.gpus, nodes), "resources.gpus");
  }
  std::vector<std::string> args = {
      "--parsable",
      "--job-name=" + SlurmJobName(spec),
      fmt::format("--comment=kervan:{}:{}", spec.job_id, spec.attempt),
  };
  if (auto it = options.partition_by_class.find(spec.priority_class);
      it != options.partition_by_class.end() && !it->second.empty()) {
    args.push_back("--partition=" + it->second);
  }
  if (auto it = options.qos_by_class.find(spec.priority_class);
      it != options.qos_by_class.end() && !it->second.empty()) {
    args.push_back("--qos=" + it->second);
  }
  args.push_back(fmt::format("--nodes={}", nodes));
  args.push_back("--ntasks-per-node=1");
  if (r.gpus > 0) {
    args.push_back(r.gpu_type.empty()
                       ? fmt::format("--gres=gpu:{}", r.gpus / nodes)
                       : fmt::format("--gres=gpu:{}:{}", r.gpu_type, r.gpus / nodes));
  }
  // CPUs and memory per node: the scheduler's allocation when there is one,
  // else the job's totals split over its nodes.
  int cpus = spec.allocation.empty() ? static_cast<int>(CeilDiv(r.cpus, nodes))
                                     : spec.allocation.front().cpus;
  int64_t memory_mb =
      spec.allocation.empty() ? CeilDiv(r.memory_mb, nodes) : spec.allocation.front().memory_mb;
  if (cpus > 0)
    args.push_back(fmt::format("--cpus-per-task={}", cpus));
  if (memory_mb > 0)
    args.push_back(fmt::format("--mem={}", memory_mb));
  if (spec.active_deadline_s > 0) {
    // Slurm's time limits are whole minutes.
    args.push_back(fmt::format("--time={}", CeilDiv(spec.active_deadline_s, 60)));
  }
  std::string log = spec.log_path;
  if (log.empty())
    log = spec.scratch_dir + fmt::format("/attempt-{}.log", spec.attempt);
  args.push_back("--output=" + EscapePercent(log));
  args.push_back("--error=" + EscapePercent(log));
  args.push_back("--open-mode=append");
  const std::string& dir = spec.working_dir.empty() ? spec.scratch_dir : spec.working_dir;
  if (!dir.empty())
    args.push_back("--chdir=" + dir);
  // The job gets sbatch's environment, which the executor sets to a small
  // base; the job's own env is exported by the script.
  args.push_back("--export=ALL");
  // Kervan retries and requeues (as a new attempt); Slurm must not.
  args.push_back("--no-requeue");
  for (const auto& extra : options.extra_sbatch_args)
    args.push_back(extra);
  args.push_back(script_path);
  return args;
}

// ---- Slurm: reading what it reports --------------------------------------

namespace {

Result<int> ParseInt(std::string_view text, std::string_view what) {
  int value = 0;
  if (text.empty())
    return core::InvalidArgument(fmt::format("{}: empty", what));
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c)) || value > 100000000)
      return core::InvalidArgument(fmt::format("{}: not a number: \"{}\"", what, text));
    value = value * 10 + (c - '0');
  }
  return value;
}

// A number that may be a plain number or Slurm's {"set": b, "number": n}.
std::optional<int64_t> SlurmNumber(const Json& v) {
  if (v.is_number_integer())
    return v.get<int64_t>();
  if (v.is_object() && v.value("set", true) && v.contains("number") &&
      v["number"].is_number_integer())
    return v["number"].get<int64_t>();
  return std::nullopt;
}

std::string JsonString(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Space-separated Key=Value tokens of `scontrol -o` and jobcomp lines. A
// word that does not start with "Key=" continues the previous value, so
// values with spaces survive as long as no word in them looks like a key.
std::map<std::string, std::string> KeyValues(std::string_view line) {
  std::map<std::string, std::string> out;
  std::string* value = nullptr;
  std::stringstream words{std::string(line)};
  for (std::string word; words >> word;) {
    auto eq = word.find('=');
    bool is_key =
        eq != std::string::npos && eq > 0 &&
        std::all_of(word.begin(), word.begin() + static_cast<std::ptrdiff_t>(eq), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == ':' || c == '/' || c == '_';
        });
    if (is_key) {
      value = &out[word.substr(0, eq)];
      *value = word.substr(eq + 1);
    } else if (value != nullptr) {
      *value += " " + word;
    }
  }
  return out;
}

}  // namespace

Result<SlurmJob> ParseSlurmExitCode(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return core::InvalidArgument(fmt::format("Slurm ExitCode \"{}\" is not N:S", text));
  ASSIGN_OR_RETURN(int code, ParseInt(text.substr(0, colon), "Slurm ExitCode"));
  ASSIGN_OR_RETURN(int sig, ParseInt(text.substr(colon + 1), "Slurm ExitCode signal"));
  SlurmJob job;
  job.signal = sig;
  job.exit_code = sig != 0 ? -1 : code;
  return job;
}

Result<std::vector<SlurmJob>> ParseSqueueJson(std::string_view text) {
  Json doc = Json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return core::InvalidArgument("squeue --json printed no JSON object");
  auto jobs = doc.find("jobs");
  if (jobs == doc.end() || !jobs->is_array())
    return core::InvalidArgument("squeue --json: no \"jobs\" array");
  std::vector<SlurmJob> out;
  for (const Json& j : *jobs) {
    if (!j.is_object())
      continue;
    SlurmJob job;
    auto id = j.find("job_id");
    if (id == j.end() || !SlurmNumber(*id))
      continue;
    job.id = std::to_string(*SlurmNumber(*id));
    // 22.05: "RUNNING" (or "COMPLETING"); 23.02+: ["COMPLETED", "COMPLETING"].
    auto state = j.find("job_state");
    std::vector<std::string> states;
    if (state != j.end() && state->is_string())
      states.push_back(state->get<std::string>());
    else if (state != j.end() && state->is_array())
      for (const auto& s : *state)
        if (s.is_string())
          states.push_back(s.get<std::string>());
    for (const auto& s : states) {
      if (s == "COMPLETING")
        job.completing = true;
      else if (job.state.empty())
        job.state = s;
    }
    if (job.state.empty())
      job.state = job.completing ? "COMPLETING" : "UNKNOWN";
    job.reason = JsonString(j, "state_reason");
    if (job.reason == "None")
      job.reason.clear();
    job.name = JsonString(j, "name");
    job.comment = JsonString(j, "comment");
    // 22.05: the wait(2) status as a number; 23.02+: an object with
    // return_code and signal.id.
    auto ec = j.find("exit_code");
    if (ec != j.end() && ec->is_number_integer()) {
      int64_t status = ec->get<int64_t>();
      if ((status & 0x7f) != 0) {
        job.signal = static_cast<int>(status & 0x7f);
      } else {
        job.exit_code = static_cast<int>((status >> 8) & 0xff);
      }
    } else if (ec != j.end() && ec->is_object()) {
      std::optional<int64_t> rc, sig;
      if (ec->contains("return_code"))
        rc = SlurmNumber((*ec)["return_code"]);
      if (ec->contains("signal") && (*ec)["signal"].is_object() && (*ec)["signal"].contains("id"))
        sig = SlurmNumber((*ec)["signal"]["id"]);
      if (sig && *sig != 0)
        job.signal = static_cast<int>(*sig);
      else if (rc)
        job.exit_code = static_cast<int>(*rc);
    }
    out.push_back(std::move(job));
  }
  return out;
}

std::optional<SlurmJob> FindJobcompRecord(std::string_view text, std::string_view id) {
  std::optional<SlurmJob> found;
  const std::string prefix = fmt::format("JobId={} ", id);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (line.substr(0, prefix.size()) != prefix)
      continue;
    auto kv = KeyValues(line);
    SlurmJob job;
    job.id = std::string(id);
    job.state = kv["JobState"];
    job.name = kv["Name"];
    if (auto code = ParseSlurmExitCode(kv["ExitCode"])) {
      job.exit_code = code->exit_code;
      job.signal = code->signal;
    }
    found = std::move(job);
  }
  return found;
}

bool IsSlurmFinalState(std::string_view state) {
  static constexpr std::string_view kFinal[] = {
      "COMPLETED", "FAILED",    "CANCELLED", "TIMEOUT",  "OUT_OF_MEMORY",
      "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
  };
  return std::find(std::begin(kFinal), std::end(kFinal), state) != std::end(kFinal);
}

ExitReport SlurmExitReport(const SlurmJob& job, bool terminate_requested) {
  ExitReport report;
  report.external_id = job.id;
  report.exit_code = job.exit_code;
  report.signal = job.signal;
  std::string status = job.signal != 0 ? fmt::format("signal {}", job.signal)
                                       : fmt::format("exit {}", job.exit_code);
  std::string reason = job.reason.empty() ? "" : ", " + job.reason;
  const std::string& s = job.state;
  if (s == "COMPLETED" && job.exit_code == 0 && job.signal == 0) {
    report.kind = ExitKind::kSucceeded;
    report.detail = "slurm state COMPLETED";
  } else if (terminate_requested) {
    report.kind = ExitKind::kTerminated;
    report.detail = fmt::format("terminated on request (slurm state {}, {})", s, status);
  } else if (s == "TIMEOUT" || s == "DEADLINE") {
    report.kind = ExitKind::kFailed;
    report.detail = "deadline";
  } else if (s == "PREEMPTED") {
    report.kind = ExitKind::kTerminated;
    report.detail = "preempted by slurm (slurm state PREEMPTED)";
  } else if (s == "OUT_OF_MEMORY") {
    report.kind = ExitKind::kFailed;
    report.detail = "out of memory (slurm state OUT_OF_MEMORY)";
  } else if (s == "NODE_FAIL" || s == "BOOT_FAIL") {
    report.kind = ExitKind::kFailed;
    report.detail = fmt::format("node failure (slurm state {})", s);
  } else if (s == "CANCELLED") {
    report.kind = ExitKind::kFailed;
    report.detail =
        fmt::format("cancelled outside Kervan (slurm state CANCELLED, {}{})", status, reason);
  } else {
    report.kind = ExitKind::kFailed;
    report.detail = fmt::format("slurm state {}, {}{}", s, status, reason);
  }
  return report;
}

Result<std::vector<Node>> ParseSlurmNodes(std::string_view text) {
  std::vector<Node> nodes;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (line.find("NodeName=") == std::string_view::npos)
      continue;
    auto kv = KeyValues(line);
    Node node;
    node.name = kv["NodeName"];
    if (node.name.empty())
      return core::InvalidArgument(fmt::format("scontrol show node: no NodeName in \"{}\"", line));
    std::string cpus = !kv["CPUTot"].empty() ? kv["CPUTot"] : kv["CPUEfctv"];
    if (auto n = ParseInt(cpus, "CPUTot"))
      node.cpus = *n;
    if (auto n = ParseInt(kv["RealMemory"], "RealMemory"))
      node.memory_mb = *n;
    // Gres=gpu:a100:4(S:0-1),gpu:v100:2,shard:8 — split on commas outside ().
    std::string gres = kv["Gres"];
    std::vector<std::string> items;
    int depth = 0;
    std::string cur;
    for (char c : gres) {
      if (c == '(')
        ++depth;
      if (c == ')')
        --depth;
      if (c == ',' && depth == 0) {
        items.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    items.push_back(cur);
    for (std::string item : items) {
      if (auto paren = item.find('('); paren != std::string::npos)
        item.resize(paren);
      if (item.rfind("gpu:", 0) != 0)
        continue;
      std::vector<std::string> parts;
      std::stringstream ss(item);
      for (std::string part; std::getline(ss, part, ':');)
        parts.push_back(part);
      // gpu:N or gpu:type:N
      auto count = ParseInt(parts.back(), "gres count");
      if (!count)
        continue;
      node.gpus += *count;
      if (parts.size() >= 3 && node.gpu_type.empty())
        node.gpu_type = parts[1];
    }
    // IDLE, MIXED, ALLOCATED, IDLE+DRAIN, DOWN*, ...; '*' = not responding.
    std::string state = kv["State"];
    for (char& c : state)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (std::string_view bad : {"DOWN", "DRAIN", "FAIL", "INVAL", "NOT_RESPONDING", "UNKNOWN",
                                 "FUTURE", "MAINT", "REBOOT", "POWER"}) {
      if (state.find(bad) != std::string::npos)
        node.schedulable = false;
    }
    if (!state.empty() && state.find('*') != std::string::npos)
      node.schedulable = false;
    nodes.push_back(std::move(node));
  }
  return nodes;
}

}  // namespace internal

// ---- The executor -------------------------------------------------------

namespace {

using internal::SlurmJob;
using internal::ToolRun;
using Clock = std::chrono::steady_clock;

class SlurmExecutor final : public Executor {
 public:
  explicit SlurmExecutor(SlurmOptions options) : options_(std::move(options)) {}

  std::string_view name() const override { return "slurm"; }

  Result<std::vector<Node>> DiscoverNodes() override {
    ASSIGN_OR_RETURN(std::string out, Run("scontrol", {"-o", "show", "node"}));
    return internal::ParseSlurmNodes(out);
  }

  Result<std::string> Launch(const LaunchSpec& spec) override {
    if (spec.scratch_dir.empty())
      return core::InvalidArgument("must be set for the Slurm executor", "scratch_dir");
    ASSIGN_OR_RETURN(std::string script, internal::SlurmBatchScript(spec));
    const std::string script_path =
        fmt::format("{}/slurm-attempt-{}.sh", spec.scratch_dir, spec.attempt);
    {
      std::ofstream f(script_path, std::ios::trunc);
      f << script;
      f.close();
      if (!f)
        return core::Internal(fmt::format("cannot write the batch script {}", script_path));
    }
    ASSIGN_OR_RETURN(auto args, internal::SbatchArgs(spec, options_, script_path));
    // sbatch's environment is what the job inherits (--export=ALL): a small
    // base, never the server's own (which may hold secrets).
    ToolRun run = Tool("sbatch", std::move(args));
    run.clear_env = true;
    for (const char* name : {"PATH", "HOME", "LANG", "USER", "LOGNAME"}) {
      if (const char* v = std::getenv(name))
        run.env[name] = v;
    }
    if (!run.env.count("PATH"))
      run.env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
    if (!options_.slurm_conf.empty())
      run.env["SLURM_CONF"] = options_.slurm_conf;
    else if (const char* conf = std::getenv("SLURM_CONF"))
      run.env["SLURM_CONF"] = conf;
    ASSIGN_OR_RETURN(std::string out, internal::RunToolChecked(run));
    // --parsable prints "<id>" or "<id>;<cluster>".
    std::string id = out.substr(0, out.find_first_of(";\n"));
    if (id.empty() || !std::all_of(id.begin(), id.end(), ::isdigit))
      return core::Internal(fmt::format("sbatch printed no job id: \"{}\"", out));
    std::lock_guard lock(mu_);
    watched_[id] = Watched{spec.job_id, spec.attempt};
    return id;
  }

  Status Terminate(const std::string& external_id, std::chrono::milliseconds grace) override {
    if (external_id.empty() || !std::all_of(external_id.begin(), external_id.end(), ::isdigit))
      return core::InvalidArgument(fmt::format("not a Slurm job id: \"{}\"", external_id));
    {
      std::lock_guard lock(mu_);
      if (auto it = watched_.find(external_id); it != watched_.end())
        it->second.terminate_requested = true;
    }
    // A pending job is simply cancelled; a running one gets SIGTERM now
    // (the batch shell and its children: --full) and SIGKILL after `grace`,
    // sent by the first Poll after it.
    ASSIGN_OR_RETURN(auto query,
                     internal::RunTool(Tool("squeue", {"-h", "-j", external_id, "-o", "%T"})));
    if (query.exit_code != 0 && query.err.find("Invalid job id") != std::string::npos)
      return core::Ok();  // Slurm has forgotten it: Poll reports it from jobcomp, or lost
    if (query.exit_code != 0) {
      return core::Unavailable(fmt::format("squeue -j {} failed: {}", external_id, query.err));
    }
    std::string state = query.out;
    while (!state.empty() && (state.back() == '\n' || state.back() == ' '))
      state.pop_back();
    if (state.empty() || internal::IsSlurmFinalState(state))
      return core::Ok();  // already ended (or unknown): Poll reports it
    if (state == "PENDING" || state == "REQUEUED" || grace.count() <= 0) {
      auto cancelled = Run("scancel", {external_id});
      return cancelled ? core::Ok() : Status(cancelled.error());
    }
    auto signalled = Run("scancel", {"--signal=TERM", "--full", external_id});
    if (!signalled) {
      // It may have just ended, or not started yet: a plain cancel covers both.
      auto cancelled = Run("scancel", {external_id});
      if (!cancelled)
        return cancelled.error();
    }
    std::lock_guard lock(mu_);
    if (auto it = watched_.find(external_id); it != watched_.end())
      it->second.kill_at = Clock::now() + grace;
    return core::Ok();
  }

  std::vector<ExitReport> Poll() override {
    std::lock_guard lock(mu_);
    std::vector<ExitReport> reports;
    reports.swap(ready_);
    if (watched_.empty())
      return reports;
    const auto now = Clock::now();
    for (auto& [id, w] : watched_) {
      if (w.kill_at && *w.kill_at <= now) {
        w.kill_at.reset();
        auto killed = Run("scancel", {"--signal=KILL", "--full", id});
        if (!killed)
          (void)Run("scancel", {id});
      }
    }
    auto jobs = QueryJobs();
    if (!jobs) {
      core::LogWarn("slurm: cannot read the job list", {{"event.action", "slurm.poll_failed"},
                                                        {"error.message", jobs.error().message}});
      return reports;
    }
    std::optional<std::string> jobcomp;  // read once, when first needed
    for (auto it = watched_.begin(); it != watched_.end();) {
      const auto& [id, w] = *it;
      std::optional<ExitReport> report;
      if (auto found = jobs->find(id); found != jobs->end()) {
        const SlurmJob& job = found->second;
        if (internal::IsSlurmFinalState(job.state) && !job.completing)
          report = internal::SlurmExitReport(job, w.terminate_requested);
      } else {
        report = FromJobcomp(id, w.terminate_requested, jobcomp);
        if (!report) {
          ExitReport lost;
          lost.external_id = id;
          lost.kind = ExitKind::kLost;
          lost.detail =
              fmt::format("slurm no longer knows job {} and has no completion record", id);
          report = lost;
        }
      }
      if (report) {
        report->job_id = w.job_id;
        report->attempt = w.attempt;
        reports.push_back(std::move(*report));
        it = watched_.erase(it);
      } else {
        ++it;
      }
    }
    return reports;
  }

  Result<bool> Adopt(const std::string& job_id, int attempt,
                     const std::string& external_id) override {
    if (external_id.empty() || !std::all_of(external_id.begin(), external_id.end(), ::isdigit))
      return core::InvalidArgument(fmt::format("not a Slurm job id: \"{}\"", external_id));
    ASSIGN_OR_RETURN(auto jobs, QueryJobs());
    std::lock_guard lock(mu_);
    if (auto found = jobs.find(external_id); found != jobs.end()) {
      // Slurm job ids restart after its state is wiped: make sure it is ours.
      const std::string expected = fmt::format("kervan:{}:{}", job_id, attempt);
      if (found->second.comment != expected)
        return false;
      watched_[external_id] = Watched{job_id, attempt};
      return true;
    }
    std::optional<std::string> jobcomp;
    if (auto report = FromJobcomp(external_id, false, jobcomp)) {
      report->job_id = job_id;
      report->attempt = attempt;
      ready_.push_back(std::move(*report));
      return true;
    }
    return false;
  }

 private:
  struct Watched {
    std::string job_id;
    int attempt = 0;
    bool terminate_requested = false;
    std::optional<Clock::time_point> kill_at;
  };

  ToolRun Tool(const std::string& tool, std::vector<std::string> args) const {
    ToolRun run;
    run.argv.push_back(options_.bin_dir.empty() ? tool : options_.bin_dir + "/" + tool);
    for (auto& a : args)
      run.argv.push_back(std::move(a));
    if (!options_.slurm_conf.empty())
      run.env["SLURM_CONF"] = options_.slurm_conf;
    run.timeout = options_.command_timeout;
    return run;
  }

  Result<std::string> Run(const std::string& tool, std::vector<std::string> args) const {
    return internal::RunToolChecked(Tool(tool, std::move(args)));
  }

  // Every job slurmctld knows, by id (squeue --json lists them all, ended
  // ones included until MinJobAge passes).
  Result<std::map<std::string, SlurmJob>> QueryJobs() const {
    ASSIGN_OR_RETURN(std::string out, Run("squeue", {"--json"}));
    ASSIGN_OR_RETURN(auto list, internal::ParseSqueueJson(out));
    std::map<std::string, SlurmJob> jobs;
    for (auto& job : list)
      jobs[job.id] = std::move(job);
    return jobs;
  }

  std::optional<ExitReport> FromJobcomp(const std::string& id, bool terminate_requested,
                                        std::optional<std::string>& cache) const {
    if (options_.jobcomp_path.empty())
      return std::nullopt;
    if (!cache) {
      std::ifstream f(options_.jobcomp_path);
      std::stringstream ss;
      ss << f.rdbuf();
      cache = ss.str();
    }
    auto job = internal::FindJobcompRecord(*cache, id);
    if (!job || !internal::IsSlurmFinalState(job->state))
      return std::nullopt;
    return internal::SlurmExitReport(*job, terminate_requested);
  }

  const SlurmOptions options_;
  std::mutex mu_;
  std::map<std::string, Watched> watched_;  // by Slurm job id
  std::vector<ExitReport> ready_;           // ends found by Adopt
};

}  // namespace

Result<std::unique_ptr<Executor>> MakeSlurmExecutor(SlurmOptions options) {
  for (const auto& [cls, partition] : options.partition_by_class) {
    if (partition.find_first_of(" ,\t\n") != std::string::npos) {
      return core::InvalidArgument(fmt::format("partition \"{}\" is not a Slurm name", partition),
                                   "slurm.partition_by_class." + cls);
    }
  }
  return std::unique_ptr<Executor>(std::make_unique<SlurmExecutor>(std::move(options)));
}

}  // namespace kervan::jobs

// Pipeline specs: the YAML a user writes, read into a checked, ordered DAG.
// Part of the pipelines module (public header pipelines.h).
//
//   name: breast-cancer                # [a-z0-9][a-z0-9._-]{0,99}
//   description: ...
//   project: default
//   experiment: breast-cancer          # tracking experiment; default: the name
//   workdir: /abs/dir                  # commands run here and `code` paths are
//                                      # relative to it (the CLI makes it
//                                      # absolute); default: "" (the step dir)
//   params:
//     test_size: 0.25                  # shorthand: default, type inferred
//     max_depth: {type: int, default: 4}
//     target: {type: string}           # no default: required at run time
//   defaults: {priority_class: dev, retries: 0, timeout_s: 0, resources: {...}}
//   steps:
//     ingest:
//       command: python3 ingest.py --out {{outputs.raw}}   # string: run by /bin/sh -c
//       outputs: {raw: raw.csv}                              # shorthand: a file
//     validate:
//       type: validate
//       inputs: {data: steps.ingest.outputs.raw}
//       expectations: [{expect: not_null, column: target, severity: error}, ...]
//     train:
//       command: [python3, train.py, --data, "{{inputs.train}}", --depth, "{{params.max_depth}}"]
//       inputs: {train: steps.split.outputs.train}
//       outputs:
//         model: {path: model.json, kind: model}
//         metrics: {path: metrics.json, kind: metrics}
//       after: [validate]              # explicit dependencies besides inputs
//       code: [train.py]               # files/dirs (relative to workdir) in the cache key
//       env: {OMP_NUM_THREADS: "1"}
//       resources: {gpus: 0, cpus: 1, memory_mb: 0}
//       priority_class: dev
//       retries: 2                     # job backoff_limit
//       timeout_s: 600                 # job active_deadline_s
//       cache: true
//     register:
//       type: register
//       model: breast-cancer           # registered model (created when missing)
//       inputs: {model: steps.train.outputs.model, metrics: steps.evaluate.outputs.metrics}
//   triggers:
//     - cron: "0 3 * * *"              # 5 fields, or 6 with seconds first (cron.h)
//     - dataset: breast-cancer-raw     # a new version of this dataset
//     - event: {type: rule.decision, filter: "data.action = 'retrain'"}
//     - webhook: {events: [push], branches: [main]}
//     params: {...}                    # optional on each trigger: run parameters
//
// Input references: steps.<step>.outputs.<output>, datasets.<name> (latest
// version) or datasets.<name>@<version>, or {path: file} (relative to workdir
// or absolute). Placeholders in command and env: {{inputs.X}} and
// {{outputs.X}} (absolute paths), {{params.X}}, {{run.id}}, {{step.dir}}.
//
// Everything here is pure (no I/O) and thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "jobs/policy.h"
#include "pipelines/checks.h"

namespace kervan::pipelines {

enum class OutputKind { kFile, kDirectory, kMetrics, kModel, kDataset };
std::string_view OutputKindName(OutputKind kind);  // "file", "directory", ...

struct OutputDecl {
  std::string name;
  OutputKind kind = OutputKind::kFile;
  std::string path;     // relative to the step's output directory; never escapes it
  std::string dataset;  // kDataset: register the file as a new version of this dataset
};

struct InputRef {
  enum class Source { kStepOutput, kDataset, kPath };
  std::string name;
  Source source = Source::kStepOutput;
  std::string step, output;     // kStepOutput
  std::string dataset;          // kDataset
  int64_t dataset_version = 0;  // kDataset: 0 = the latest at run start
  std::string path;             // kPath: as written
  std::string text;             // the reference as written, for messages
};

enum class ParamType { kString, kInt, kFloat, kBool };
std::string_view ParamTypeName(ParamType type);

struct ParamDecl {
  std::string name;
  ParamType type = ParamType::kString;
  std::optional<std::string> default_value;  // canonical text; nullopt = required
};

inline constexpr std::string_view kCommandStep = "command";
inline constexpr std::string_view kValidateStep = "validate";
inline constexpr std::string_view kRegisterStep = "register";

struct StepSpec {
  std::string name;
  std::string type = std::string(kCommandStep);  // command | validate | register
  std::vector<std::string> command;  // argv; a string command is {"/bin/sh", "-c", text}
  std::map<std::string, std::string> env;
  std::vector<InputRef> inputs;
  std::vector<OutputDecl> outputs;
  std::vector<std::string> after;  // explicit dependencies as written
  std::vector<std::string> code;   // cache-key paths, relative to workdir
  jobs::Resources resources;
  std::string priority_class = "dev";
  std::string image;
  int retries = 0;
  int64_t timeout_s = 0;
  bool cache = true;
  std::vector<Expectation> expectations;  // validate
  std::string model;                      // register: the registered model's name
  // Resolved: every step this one waits for (after + producers of its
  // inputs), sorted, without duplicates.
  std::vector<std::string> depends_on;
};

struct TriggerSpec {
  enum class Kind { kCron, kDataset, kEvent, kWebhook };
  Kind kind = Kind::kCron;
  std::string cron;                           // kCron: checked with CronSchedule::Parse
  std::string dataset;                        // kDataset
  std::string event_type;                     // kEvent: exact type, or a prefix ending in "."
  std::string filter;                         // kEvent: core filter text ("" = any), checked
  std::vector<std::string> webhook_events;    // kWebhook: "push", "pipeline", ... ("" = any)
  std::vector<std::string> branches;          // kWebhook: ("" = any)
  std::map<std::string, std::string> params;  // run parameters the trigger passes
};
std::string_view TriggerKindName(TriggerSpec::Kind kind);  // "cron", "dataset", ...

struct PipelineSpec {
  std::string name, description;
  std::string project = "default";
  std::string experiment;  // "" = name
  std::string workdir;
  std::vector<ParamDecl> params;
  std::vector<StepSpec> steps;  // in a topological order (ties: as written)
  std::vector<TriggerSpec> triggers;

  const StepSpec* FindStep(std::string_view name) const;
  // A canonical JSON form (keys sorted, every default written out): equal
  // specs give equal JSON; its SHA-256 is the spec's digest.
  Json ToJson() const;
};

// Parses and checks a spec. Errors are kInvalidArgument; the field is the
// location as a path ("steps.train.inputs.data") and the message starts with
// it and the YAML line and column:
//   steps.train.inputs.data (line 14, column 13): unknown step "splitt" in
//   "steps.splitt.outputs.train"
// Checks: YAML syntax; unknown keys; names; step types; commands present for
// command steps (absent for built-ins); references to unknown steps,
// outputs, params; output paths that are absolute, contain "..", or repeat;
// cycles (the message lists the cycle: "a -> b -> a"); validate steps with
// exactly one input and at least one expectation; register steps with a
// model name and a `model` input; cron expressions; event filters;
// placeholders naming undeclared inputs, outputs or params.
Result<PipelineSpec> ParsePipelineSpec(std::string_view yaml_text);

// The parameters of one run: declared defaults overridden by `given`.
// kInvalidArgument (field "params.<name>") for an unknown name, a value that
// is not of the declared type, or a missing required one. Values come back
// canonical (ints without leading zeros, bools as true/false).
Result<std::map<std::string, std::string>> ResolveParams(
    const PipelineSpec& spec, const std::map<std::string, std::string>& given);

// The params a step's command and env mention ({{params.X}}): only these
// enter its cache key, so changing another parameter does not rerun it.
std::vector<std::string> ParamsUsedBy(const StepSpec& step);

struct RenderContext {
  std::map<std::string, std::string> inputs;   // name -> absolute path
  std::map<std::string, std::string> outputs;  // name -> absolute path
  std::map<std::string, std::string> params;   // resolved
  std::string run_id, step_dir;
};
// Substitutes placeholders in command and env. In a shell command (a string
// command, i.e. {"/bin/sh", "-c", text}) each value is substituted as one
// shell word, single-quoted unless it holds only [A-Za-z0-9_./:=@,+-%], so a
// run parameter cannot inject shell syntax: write {{params.x}}, not
// '{{params.x}}'. kInvalidArgument naming the placeholder when one has no
// value (the parser already refuses unknown ones).
Result<std::vector<std::string>> RenderCommand(const StepSpec& step, const RenderContext& ctx);
Result<std::map<std::string, std::string>> RenderEnv(const StepSpec& step,
                                                     const RenderContext& ctx);

}  // namespace kervan::pipelines

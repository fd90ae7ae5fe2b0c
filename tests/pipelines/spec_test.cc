#include "pipelines/spec.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kervan::pipelines {
namespace {

using StringMap = std::map<std::string, std::string>;

// The header's example, completed (split and evaluate steps) so that it parses.
constexpr std::string_view kExample = R"(name: breast-cancer
description: Train a classifier on the breast cancer data
workdir: /srv/pipelines/breast-cancer
params:
  test_size: 0.25
  max_depth: {type: int, default: 4}
  target: {type: string}
defaults: {priority_class: dev, retries: 0, timeout_s: 0, resources: {cpus: 1}}
steps:
  ingest:
    command: python3 ingest.py --out {{outputs.raw}}
    outputs: {raw: raw.csv}
  validate:
    type: validate
    inputs: {data: steps.ingest.outputs.raw}
    expectations:
      - {expect: not_null, column: target, severity: error}
  split:
    command: [python3, split.py, --in, "{{inputs.raw}}", --test-size, "{{ params.test_size }}",
              --train, "{{outputs.train}}", --test, "{{outputs.test}}"]
    inputs: {raw: steps.ingest.outputs.raw}
    outputs: {train: train.csv, test: test.csv}
    after: [validate]
  train:
    command: [python3, train.py, --data, "{{inputs.train}}", --depth, "{{params.max_depth}}"]
    inputs: {train: steps.split.outputs.train}
    outputs:
      model: {path: model.json, kind: model}
      metrics: {path: metrics.json, kind: metrics}
    after: [validate]
    code: [train.py]
    env: {OMP_NUM_THREADS: "1", TARGET: "{{params.target}}"}
    resources: {gpus: 0, cpus: 2, memory_mb: 512}
    priority_class: prod
    retries: 2
    timeout_s: 600
    cache: true
  evaluate:
    command: python3 evaluate.py --model {{inputs.model}} --test {{inputs.test}}
    inputs: {model: steps.train.outputs.model, test: steps.split.outputs.test}
    outputs:
      metrics: {path: eval/metrics.json, kind: metrics}
    cache: false
  register:
    type: register
    model: breast-cancer
    inputs: {model: steps.train.outputs.model, metrics: steps.evaluate.outputs.metrics}
triggers:
  - cron: "0 3 * * *"
  - dataset: breast-cancer-raw
  - event: {type: rule.decision, filter: "data.action = 'retrain'"}
  - webhook: {events: [push], branches: [main]}
    params: {target: label, max_depth: "007"}
)";

PipelineSpec MustParse(std::string_view yaml) {
  auto spec = ParsePipelineSpec(yaml);
  EXPECT_TRUE(spec.has_value()) << (spec ? "" : spec.error().ToString());
  return spec ? std::move(spec).value() : PipelineSpec{};
}

std::vector<std::string> StepNames(const PipelineSpec& spec) {
  std::vector<std::string> names;
  for (const auto& s : spec.steps)
    names.push_back(s.name);
  return names;
}

TEST(PipelineSpec, ParsesTheHeaderExample) {
  PipelineSpec spec = MustParse(kExample);
  EXPECT_EQ(spec.name, "breast-cancer");
  EXPECT_EQ(spec.project, "default");
  EXPECT_EQ(spec.experiment, "");
  EXPECT_EQ(spec.workdir, "/srv/pipelines/breast-cancer");
  EXPECT_EQ(StepNames(spec), (std::vector<std::string>{"ingest", "validate", "split", "train",
                                                       "evaluate", "register"}));

  ASSERT_EQ(spec.params.size(), 3u);
  EXPECT_EQ(spec.params[0].name, "test_size");
  EXPECT_EQ(spec.params[0].type, ParamType::kFloat);
  EXPECT_EQ(spec.params[0].default_value, "0.25");
  EXPECT_EQ(spec.params[1].type, ParamType::kInt);
  EXPECT_EQ(spec.params[1].default_value, "4");
  EXPECT_EQ(spec.params[2].type, ParamType::kString);
  EXPECT_FALSE(spec.params[2].default_value.has_value());

  const StepSpec* ingest = spec.FindStep("ingest");
  ASSERT_NE(ingest, nullptr);
  EXPECT_EQ(ingest->type, kCommandStep);
  EXPECT_EQ(ingest->command,
            (std::vector<std::string>{"/bin/sh", "-c", "python3 ingest.py --out {{outputs.raw}}"}));
  ASSERT_EQ(ingest->outputs.size(), 1u);
  EXPECT_EQ(ingest->outputs[0].kind, OutputKind::kFile);
  EXPECT_EQ(ingest->outputs[0].path, "raw.csv");
  EXPECT_EQ(ingest->resources.cpus, 1);  // from defaults
  EXPECT_TRUE(ingest->depends_on.empty());

  const StepSpec* validate = spec.FindStep("validate");
  ASSERT_NE(validate, nullptr);
  EXPECT_EQ(validate->type, kValidateStep);
  EXPECT_TRUE(validate->command.empty());
  ASSERT_EQ(validate->expectations.size(), 1u);
  EXPECT_EQ(validate->expectations[0].expect, "not_null");
  EXPECT_EQ(validate->expectations[0].column, "target");
  EXPECT_EQ(validate->depends_on, (std::vector<std::string>{"ingest"}));

  const StepSpec* train = spec.FindStep("train");
  ASSERT_NE(train, nullptr);
  EXPECT_EQ(train->command[0], "python3");
  EXPECT_EQ(train->command.size(), 6u);
  ASSERT_EQ(train->inputs.size(), 1u);
  EXPECT_EQ(train->inputs[0].name, "train");
  EXPECT_EQ(train->inputs[0].source, InputRef::Source::kStepOutput);
  EXPECT_EQ(train->inputs[0].step, "split");
  EXPECT_EQ(train->inputs[0].output, "train");
  EXPECT_EQ(train->inputs[0].text, "steps.split.outputs.train");
  ASSERT_EQ(train->outputs.size(), 2u);
  EXPECT_EQ(train->outputs[0].kind, OutputKind::kModel);
  EXPECT_EQ(train->outputs[1].kind, OutputKind::kMetrics);
  EXPECT_EQ(train->after, (std::vector<std::string>{"validate"}));
  EXPECT_EQ(train->depends_on, (std::vector<std::string>{"split", "validate"}));
  EXPECT_EQ(train->code, (std::vector<std::string>{"train.py"}));
  EXPECT_EQ(train->env, (StringMap{{"OMP_NUM_THREADS", "1"}, {"TARGET", "{{params.target}}"}}));
  EXPECT_EQ(train->resources.cpus, 2);
  EXPECT_EQ(train->resources.memory_mb, 512);
  EXPECT_EQ(train->resources.nodes, 1);
  EXPECT_EQ(train->priority_class, "prod");
  EXPECT_EQ(train->retries, 2);
  EXPECT_EQ(train->timeout_s, 600);
  EXPECT_TRUE(train->cache);

  const StepSpec* evaluate = spec.FindStep("evaluate");
  ASSERT_NE(evaluate, nullptr);
  EXPECT_FALSE(evaluate->cache);
  EXPECT_EQ(evaluate->priority_class, "dev");
  EXPECT_EQ(evaluate->depends_on, (std::vector<std::string>{"split", "train"}));

  const StepSpec* reg = spec.FindStep("register");
  ASSERT_NE(reg, nullptr);
  EXPECT_EQ(reg->type, kRegisterStep);
  EXPECT_EQ(reg->model, "breast-cancer");
  EXPECT_EQ(reg->depends_on, (std::vector<std::string>{"evaluate", "train"}));
  EXPECT_EQ(spec.FindStep("nope"), nullptr);

  ASSERT_EQ(spec.triggers.size(), 4u);
  EXPECT_EQ(spec.triggers[0].kind, TriggerSpec::Kind::kCron);
  EXPECT_EQ(spec.triggers[0].cron, "0 3 * * *");
  EXPECT_EQ(spec.triggers[1].kind, TriggerSpec::Kind::kDataset);
  EXPECT_EQ(spec.triggers[1].dataset, "breast-cancer-raw");
  EXPECT_EQ(spec.triggers[2].kind, TriggerSpec::Kind::kEvent);
  EXPECT_EQ(spec.triggers[2].event_type, "rule.decision");
  EXPECT_EQ(spec.triggers[2].filter, "data.action = 'retrain'");
  EXPECT_EQ(spec.triggers[3].kind, TriggerSpec::Kind::kWebhook);
  EXPECT_EQ(spec.triggers[3].webhook_events, (std::vector<std::string>{"push"}));
  EXPECT_EQ(spec.triggers[3].branches, (std::vector<std::string>{"main"}));
  // Trigger params are checked against the declarations and made canonical.
  EXPECT_EQ(spec.triggers[3].params, (StringMap{{"max_depth", "7"}, {"target", "label"}}));
}

TEST(PipelineSpec, DiamondRunsInTopologicalOrderWithTiesAsWritten) {
  // a -> b, a -> c, b + c -> d, written backwards.
  PipelineSpec spec = MustParse(R"(name: diamond
steps:
  d: {command: "true", after: [b], inputs: {x: steps.c.outputs.o}}
  b: {command: "true", after: [a]}
  c: {command: "true", inputs: {x: steps.a.outputs.o}, outputs: {o: o.txt}}
  a: {command: "true", outputs: {o: o.txt}}
)");
  EXPECT_EQ(StepNames(spec), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(spec.FindStep("d")->depends_on, (std::vector<std::string>{"b", "c"}));

  // The same graph with c written before b: c runs first.
  spec = MustParse(R"(name: diamond
steps:
  a: {command: "true"}
  c: {command: "true", after: [a]}
  b: {command: "true", after: [a]}
  d: {command: "true", after: [c, b, c2]}
  c2: {command: "true", after: [a]}
)");
  EXPECT_EQ(StepNames(spec), (std::vector<std::string>{"a", "c", "b", "c2", "d"}));
  EXPECT_EQ(spec.FindStep("d")->depends_on, (std::vector<std::string>{"b", "c", "c2"}));
}

TEST(PipelineSpec, InputReferenceForms) {
  PipelineSpec spec = MustParse(R"(name: refs
steps:
  a:
    command: [cat, "{{inputs.latest}}", "{{inputs.pinned}}", "{{inputs.file}}"]
    inputs:
      latest: datasets.raw
      pinned: datasets.raw.v2@3
      file: {path: data/local.csv}
)");
  const auto& in = spec.steps[0].inputs;
  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[0].source, InputRef::Source::kDataset);
  EXPECT_EQ(in[0].dataset, "raw");
  EXPECT_EQ(in[0].dataset_version, 0);
  EXPECT_EQ(in[1].source, InputRef::Source::kDataset);
  EXPECT_EQ(in[1].dataset, "raw.v2");
  EXPECT_EQ(in[1].dataset_version, 3);
  EXPECT_EQ(in[1].text, "datasets.raw.v2@3");
  EXPECT_EQ(in[2].source, InputRef::Source::kPath);
  EXPECT_EQ(in[2].path, "data/local.csv");
  EXPECT_TRUE(spec.steps[0].depends_on.empty());
}

TEST(PipelineSpec, DefaultsApplyToEveryStepAndStepsOverrideThem) {
  PipelineSpec spec = MustParse(R"(name: defaults
defaults:
  priority_class: batch
  retries: 1
  timeout_s: 60
  cache: false
  image: python:3.12
  resources: {gpus: 2, gpu_type: a100, memory_mb: 1024}
  env: {A: "1", B: "2"}
steps:
  plain: {command: "true"}
  custom:
    command: "true"
    priority_class: prod
    retries: 3
    cache: true
    resources: {gpus: 4, nodes: 2}
    env: {B: "3", C: "4"}
)");
  const StepSpec* plain = spec.FindStep("plain");
  EXPECT_EQ(plain->priority_class, "batch");
  EXPECT_EQ(plain->retries, 1);
  EXPECT_EQ(plain->timeout_s, 60);
  EXPECT_FALSE(plain->cache);
  EXPECT_EQ(plain->image, "python:3.12");
  EXPECT_EQ(plain->resources.gpus, 2);
  EXPECT_EQ(plain->resources.gpu_type, "a100");
  EXPECT_EQ(plain->resources.memory_mb, 1024);
  EXPECT_EQ(plain->env, (StringMap{{"A", "1"}, {"B", "2"}}));

  const StepSpec* custom = spec.FindStep("custom");
  EXPECT_EQ(custom->priority_class, "prod");
  EXPECT_EQ(custom->retries, 3);
  EXPECT_EQ(custom->timeout_s, 60);
  EXPECT_TRUE(custom->cache);
  EXPECT_EQ(custom->resources.gpus, 4);
  EXPECT_EQ(custom->resources.nodes, 2);
  EXPECT_EQ(custom->resources.gpu_type, "a100");
  EXPECT_EQ(custom->env, (StringMap{{"A", "1"}, {"B", "3"}, {"C", "4"}}));
}

TEST(PipelineSpec, ParamTypesAreInferredByTheYamlCoreSchema) {
  PipelineSpec spec = MustParse(R"(name: params
params:
  f: 0.5
  i: 12
  hex: 0x10
  b: true
  s: hello
  quoted: "0.5"
  explicit_bool: {type: bool, default: "yes"}
  explicit_float: {type: float, default: 1e-3}
  inferred: {default: 3}
steps:
  a: {command: "true"}
)");
  std::map<std::string, std::pair<ParamType, std::string>> got;
  for (const auto& p : spec.params)
    got[p.name] = {p.type, p.default_value.value_or("<none>")};
  EXPECT_EQ(got["f"], std::make_pair(ParamType::kFloat, std::string("0.5")));
  EXPECT_EQ(got["i"], std::make_pair(ParamType::kInt, std::string("12")));
  EXPECT_EQ(got["hex"], std::make_pair(ParamType::kInt, std::string("16")));
  EXPECT_EQ(got["b"], std::make_pair(ParamType::kBool, std::string("true")));
  EXPECT_EQ(got["s"], std::make_pair(ParamType::kString, std::string("hello")));
  EXPECT_EQ(got["quoted"], std::make_pair(ParamType::kString, std::string("0.5")));
  EXPECT_EQ(got["explicit_bool"], std::make_pair(ParamType::kBool, std::string("true")));
  EXPECT_EQ(got["explicit_float"], std::make_pair(ParamType::kFloat, std::string("1e-3")));
  EXPECT_EQ(got["inferred"], std::make_pair(ParamType::kInt, std::string("3")));
}

TEST(PipelineSpec, NamesOfKindsAndTypes) {
  EXPECT_EQ(OutputKindName(OutputKind::kFile), "file");
  EXPECT_EQ(OutputKindName(OutputKind::kDirectory), "directory");
  EXPECT_EQ(OutputKindName(OutputKind::kMetrics), "metrics");
  EXPECT_EQ(OutputKindName(OutputKind::kModel), "model");
  EXPECT_EQ(OutputKindName(OutputKind::kDataset), "dataset");
  EXPECT_EQ(ParamTypeName(ParamType::kString), "string");
  EXPECT_EQ(ParamTypeName(ParamType::kInt), "int");
  EXPECT_EQ(ParamTypeName(ParamType::kFloat), "float");
  EXPECT_EQ(ParamTypeName(ParamType::kBool), "bool");
  EXPECT_EQ(TriggerKindName(TriggerSpec::Kind::kCron), "cron");
  EXPECT_EQ(TriggerKindName(TriggerSpec::Kind::kDataset), "dataset");
  EXPECT_EQ(TriggerKindName(TriggerSpec::Kind::kEvent), "event");
  EXPECT_EQ(TriggerKindName(TriggerSpec::Kind::kWebhook), "webhook");
}

TEST(PipelineSpec, DatasetOutputsNameTheirDataset) {
  PipelineSpec spec = MustParse(R"(name: ds
steps:
  a:
    command: "true"
    outputs:
      clean: {path: out/clean.csv, kind: dataset, dataset: clean-data}
      dir: {path: out/plots/, kind: directory}
)");
  const auto& outputs = spec.steps[0].outputs;
  ASSERT_EQ(outputs.size(), 2u);
  EXPECT_EQ(outputs[0].kind, OutputKind::kDataset);
  EXPECT_EQ(outputs[0].dataset, "clean-data");
  EXPECT_EQ(outputs[1].kind, OutputKind::kDirectory);
  EXPECT_EQ(outputs[1].path, "out/plots");
}

// ---- errors: the field, the line, and what is wrong ----

struct BadSpec {
  const char* name;
  const char* yaml;
  const char* field;
  int line;
  const char* message;  // a part of the message
};

class PipelineSpecErrors : public testing::TestWithParam<BadSpec> {};

TEST_P(PipelineSpecErrors, NameTheFieldAndLine) {
  const BadSpec& c = GetParam();
  auto spec = ParsePipelineSpec(c.yaml);
  ASSERT_FALSE(spec.has_value()) << "parsed: " << spec->ToJson().dump();
  const core::Error& e = spec.error();
  EXPECT_EQ(e.code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(e.field, c.field) << e.message;
  std::string prefix = std::string(c.field) + " (line " + std::to_string(c.line) + ", column ";
  EXPECT_TRUE(e.message.starts_with(prefix))
      << "want prefix \"" << prefix << "\" in: " << e.message;
  EXPECT_NE(e.message.find(c.message), std::string::npos)
      << "want \"" << c.message << "\" in: " << e.message;
}

const BadSpec kBadSpecs[] = {
    {"MalformedYaml", "name: p\nsteps:\n  a: {command: [x, y}\n", "spec", 3, "not valid YAML"},
    {"TabIndentation", "name: p\nsteps:\n  a:\n\tcommand: x\n", "spec", 4, "not valid YAML"},
    {"TwoDocuments", "name: p\nsteps:\n  a: {command: x}\n---\nname: q\n", "spec", 5,
     "one YAML document"},
    {"NulInCommand", "name: p\nsteps:\n  a: {command: \"x\\0y\"}\n", "steps.a.command", 3,
     "NUL byte"},
    {"NonScalarKey", "name: p\nsteps:\n  ? [k]\n  : {command: x}\n", "steps", 3,
     "keys must be scalars"},
    {"SelfReferentialExpectation",
     "name: p\nsteps:\n  v:\n    type: validate\n    inputs: {d: datasets.d}\n"
     "    expectations:\n      - &x {expect: not_null, column: [*x]}\n",
     "steps.v.expectations[0]", 7, "nested too deeply"},
    {"NotAMapping", "- a\n- b\n", "spec", 1, "a pipeline spec is a mapping"},
    {"EmptyDocument", "", "spec", 1, "got null"},
    {"MissingName", "steps:\n  a: {command: x}\n", "name", 1, "required"},
    {"BadPipelineName", "name: Breast_Cancer\nsteps:\n  a: {command: x}\n", "name", 1,
     "must match [a-z0-9][a-z0-9._-]{0,99}"},
    {"UnknownTopLevelKey", "name: p\nstepz: {}\n", "stepz", 2,
     "unknown key \"stepz\" (allowed: name, description, project"},
    {"DuplicateKey", "name: p\nname: q\nsteps:\n  a: {command: x}\n", "name", 2, "given twice"},
    {"NoSteps", "name: p\nsteps: {}\n", "steps", 2, "at least one step"},
    {"UnknownStepKey", "name: p\nsteps:\n  a:\n    comand: x\n", "steps.a.comand", 4,
     "unknown key \"comand\" (allowed: type, command,"},
    {"BadStepName", "name: p\nsteps:\n  1st: {command: x}\n", "steps.1st", 3,
     "step name \"1st\" must match"},
    {"UnknownStepType", "name: p\nsteps:\n  a:\n    type: train\n    command: x\n", "steps.a.type",
     4, "unknown step type \"train\" (command, validate, register)"},
    {"MissingCommand", "name: p\nsteps:\n  a:\n    outputs: {o: o.txt}\n", "steps.a.command", 4,
     "command steps need a command"},
    {"EmptyCommand", "name: p\nsteps:\n  a:\n    command: []\n", "steps.a.command", 4,
     "must name a program"},
    {"CommandOnBuiltIn",
     "name: p\nsteps:\n  v:\n    type: validate\n    command: python3 check.py\n",
     "steps.v.command", 5, "validate steps are built in and take no command"},
    {"ExpectationsOnCommandStep",
     "name: p\nsteps:\n  a:\n    command: x\n    expectations: [{expect: not_null, column: c}]\n",
     "steps.a.expectations", 5, "only validate steps"},
    {"UnknownStepRef",
     "name: p\nsteps:\n  split: {command: x, outputs: {train: t.csv}}\n  train:\n    command: x\n"
     "    inputs:\n      data: steps.splitt.outputs.train\n",
     "steps.train.inputs.data", 7, "unknown step \"splitt\" in \"steps.splitt.outputs.train\""},
    {"UnknownOutputRef",
     "name: p\nsteps:\n  split: {command: x, outputs: {train: t.csv}}\n  train:\n    command: x\n"
     "    inputs: {data: steps.split.outputs.test}\n",
     "steps.train.inputs.data", 6, "step \"split\" has no output \"test\""},
    {"UnknownRefForm",
     "name: p\nsteps:\n  a:\n    command: x\n    inputs:\n      data: steps.split.train\n",
     "steps.a.inputs.data", 6, "unknown reference form \"steps.split.train\""},
    {"PlainPathIsNotARef", "name: p\nsteps:\n  a:\n    command: x\n    inputs: {data: raw.csv}\n",
     "steps.a.inputs.data", 5, "unknown reference form \"raw.csv\""},
    {"BadDatasetVersion",
     "name: p\nsteps:\n  a:\n    command: x\n    inputs:\n      data: datasets.raw@latest\n",
     "steps.a.inputs.data", 6, "dataset version \"latest\""},
    {"BadDatasetName",
     "name: p\nsteps:\n  a:\n    command: x\n    inputs:\n      data: datasets.r/w\n",
     "steps.a.inputs.data", 6, "dataset name \"r/w\""},
    {"UnknownPlaceholderInString", "name: p\nsteps:\n  a:\n    command: echo {{input.x}}\n",
     "steps.a.command", 4, "unknown placeholder {{input.x}}"},
    {"UnknownPlaceholderInArgv",
     "name: p\nsteps:\n  a:\n    command:\n      - echo\n      - \"{{ run.uuid }}\"\n",
     "steps.a.command[1]", 6, "unknown placeholder {{ run.uuid }}"},
    {"UndeclaredParam",
     "name: p\nparams: {lr: 0.1}\nsteps:\n  a:\n    command: [train, --lr, \"{{params.rate}}\"]\n",
     "steps.a.command[2]", 5, "no param \"rate\" is declared"},
    {"UndeclaredInputPlaceholder", "name: p\nsteps:\n  a:\n    command: cat {{inputs.data}}\n",
     "steps.a.command", 4, "step \"a\" has no input \"data\""},
    {"UndeclaredOutputInEnv",
     "name: p\nsteps:\n  a:\n    command: x\n    env:\n      OUT: \"{{outputs.model}}\"\n",
     "steps.a.env.OUT", 6, "step \"a\" has no output \"model\""},
    {"UndeclaredOutputInDefaultsEnv",
     "name: p\ndefaults:\n  env: {OUT: \"{{outputs.model}}\"}\nsteps:\n  a: {command: x}\n",
     "defaults.env.OUT", 3, "in step \"a\": placeholder {{outputs.model}}"},
    {"BadEnvName", "name: p\nsteps:\n  a:\n    command: x\n    env: {1X: y}\n", "steps.a.env.1X", 5,
     "not a variable name"},
    {"Cycle",
     "name: p\nsteps:\n  b: {command: x, after: [a]}\n  a: {command: x, after: [c]}\n"
     "  c: {command: x, after: [b]}\n",
     "steps.b", 3, "dependency cycle: b -> c -> a -> b"},
    {"CycleThroughInputs",
     "name: p\nsteps:\n  start: {command: x}\n  a:\n    command: x\n"
     "    inputs: {i: steps.b.outputs.o}\n    outputs: {o: o}\n"
     "  b:\n    command: x\n    inputs: {i: steps.a.outputs.o}\n    outputs: {o: o}\n",
     "steps.a", 4, "dependency cycle: a -> b -> a"},
    {"SelfDependencyAfter", "name: p\nsteps:\n  a:\n    command: x\n    after: [a]\n",
     "steps.a.after[0]", 5, "step \"a\" depends on itself"},
    {"SelfDependencyInput",
     "name: p\nsteps:\n  a:\n    command: x\n    inputs: {i: steps.a.outputs.o}\n"
     "    outputs: {o: o.txt}\n",
     "steps.a.inputs.i", 5, "depends on itself"},
    {"AfterUnknownStep", "name: p\nsteps:\n  a:\n    command: x\n    after: [b]\n",
     "steps.a.after[0]", 5, "unknown step \"b\""},
    {"OutputEscapesWithDotDot", "name: p\nsteps:\n  a:\n    command: x\n    outputs: {o: ../x}\n",
     "steps.a.outputs.o", 5, "contains \"..\"; outputs may not escape"},
    {"OutputAbsolute",
     "name: p\nsteps:\n  a:\n    command: x\n    outputs:\n      o: {path: /etc/passwd}\n",
     "steps.a.outputs.o.path", 6, "\"/etc/passwd\" is absolute"},
    {"OutputEscapesInTheMiddle",
     "name: p\nsteps:\n  a:\n    command: x\n    outputs:\n      o: a/../../b\n",
     "steps.a.outputs.o", 6, "contains \"..\""},
    {"OutputEmptyPath", "name: p\nsteps:\n  a:\n    command: x\n    outputs:\n      o: \"\"\n",
     "steps.a.outputs.o", 6, "must not be empty"},
    {"OutputIsTheDirectory", "name: p\nsteps:\n  a:\n    command: x\n    outputs:\n      o: ./\n",
     "steps.a.outputs.o", 6, "names the output directory itself"},
    {"DuplicateOutputPath",
     "name: p\nsteps:\n  a:\n    command: x\n    outputs:\n      o: a.csv\n      p: ./a.csv\n",
     "steps.a.outputs.p", 7, "already the path of output \"o\""},
    {"UnknownOutputKind",
     "name: p\nsteps:\n  a:\n    command: x\n    outputs:\n      o: {path: m, kind: blob}\n",
     "steps.a.outputs.o.kind", 6, "unknown output kind \"blob\""},
    {"DatasetOutputWithoutDataset",
     "name: p\nsteps:\n  a:\n    command: x\n    outputs:\n      o: {path: m, kind: dataset}\n",
     "steps.a.outputs.o.dataset", 6, "required for kind dataset"},
    {"BadParamDefault", "name: p\nparams:\n  depth: {type: int, default: deep}\nsteps:\n  a: x\n",
     "params.depth.default", 3, "must be an int"},
    {"UnknownParamType", "name: p\nparams:\n  depth: {type: integer}\nsteps:\n  a: x\n",
     "params.depth.type", 3, "unknown param type \"integer\""},
    {"NullParam", "name: p\nparams:\n  depth:\nsteps:\n  a: x\n", "params.depth", 3,
     "a param is a default value"},
    {"BadDefaultsRetries", "name: p\ndefaults:\n  retries: many\nsteps:\n  a: {command: x}\n",
     "defaults.retries", 3, "must be an integer between 0 and 100, got \"many\""},
    {"UnknownDefaultsKey", "name: p\ndefaults:\n  gpus: 1\nsteps:\n  a: {command: x}\n",
     "defaults.gpus", 3, "unknown key \"gpus\" (allowed: priority_class"},
    {"ZeroNodes", "name: p\nsteps:\n  a:\n    command: x\n    resources: {nodes: 0}\n",
     "steps.a.resources.nodes", 5, "between 1 and 128"},
    {"UnevenGpusOverNodes",
     "name: p\nsteps:\n  a:\n    command: x\n    resources: {gpus: 3, nodes: 2}\n",
     "steps.a.resources.nodes", 5, "3 GPUs cannot be split evenly over 2 nodes"},
    {"NegativeTimeout", "name: p\nsteps:\n  a:\n    command: x\n    timeout_s: -1\n",
     "steps.a.timeout_s", 5, "between 0 and"},
    {"CacheNotABool", "name: p\nsteps:\n  a:\n    command: x\n    cache: maybe\n", "steps.a.cache",
     5, "must be true or false"},
    {"ValidateTwoInputs",
     "name: p\nsteps:\n  v:\n    type: validate\n"
     "    inputs: {a: datasets.a, b: datasets.b}\n"
     "    expectations: [{expect: not_null, column: c}]\n",
     "steps.v.inputs", 5, "exactly one input"},
    {"ValidateWithoutExpectations",
     "name: p\nsteps:\n  v:\n    type: validate\n    inputs: {a: datasets.a}\n",
     "steps.v.expectations", 4, "at least one expectation"},
    {"RegisterWithoutModel",
     "name: p\nsteps:\n  r:\n    type: register\n    inputs: {model: datasets.m}\n",
     "steps.r.model", 4, "register steps name the registered model"},
    {"RegisterWithoutModelInput",
     "name: p\nsteps:\n  r:\n    type: register\n    model: m\n    inputs: {weights: datasets.m}\n",
     "steps.r.inputs.model", 6, "need an input named \"model\""},
    {"BadCron", "name: p\nsteps:\n  a: {command: x}\ntriggers:\n  - cron: \"0 25 * * *\"\n",
     "triggers[0].cron", 5, "25"},
    {"BadEventFilter",
     "name: p\nsteps:\n  a: {command: x}\ntriggers:\n"
     "  - event: {type: rule.decision, filter: \"params.x ==\"}\n",
     "triggers[0].event.filter", 5, "filter"},
    {"TwoTriggerKinds",
     "name: p\nsteps:\n  a: {command: x}\ntriggers:\n  - cron: \"@daily\"\n    dataset: d\n",
     "triggers[0].dataset", 6, "a trigger has one kind"},
    {"TriggerUnknownParam",
     "name: p\nsteps:\n  a: {command: x}\ntriggers:\n  - dataset: d\n    params: {lr: 1}\n",
     "triggers[0].params.lr", 6, "unknown param \"lr\" (declared: none)"},
    {"TriggerParamOfWrongType",
     "name: p\nparams: {n: 1}\nsteps:\n  a: {command: x}\ntriggers:\n  - dataset: d\n"
     "    params: {n: many}\n",
     "triggers[0].params.n", 7, "must be an int"},
    {"ExpectationNotAMapping",
     "name: p\nsteps:\n  v:\n    type: validate\n    inputs: {d: datasets.d}\n"
     "    expectations:\n      - not_null\n",
     "steps.v.expectations[0]", 7, "must be a mapping"},
};

INSTANTIATE_TEST_SUITE_P(Table, PipelineSpecErrors, testing::ValuesIn(kBadSpecs),
                         [](const testing::TestParamInfo<BadSpec>& info) {
                           return std::string(info.param.name);
                         });

TEST(PipelineSpec, BadExpectationIsReportedAtItsLocation) {
  // What makes an expectation bad is checks.h's business; here only that the
  // error is anchored inside the expectation with its line.
  auto spec = ParsePipelineSpec(
      "name: p\nsteps:\n  v:\n    type: validate\n    inputs: {d: datasets.d}\n"
      "    expectations:\n      - {expect: no_such_check, column: c}\n");
  ASSERT_FALSE(spec.has_value());
  EXPECT_TRUE(spec.error().field.starts_with("steps.v.expectations[0]")) << spec.error().field;
  EXPECT_NE(spec.error().message.find("(line 7, column "), std::string::npos)
      << spec.error().message;
}

TEST(PipelineSpec, AliasBombIsRefusedNotExpanded) {
  // Six levels of ten aliases each: a million values if expanded.
  std::string levels = "&l0 [x, x, x, x, x, x, x, x, x, x]";
  for (int i = 1; i < 6; ++i) {
    std::string ref = "*l" + std::to_string(i - 1);
    levels += ", &l" + std::to_string(i) + " [" + ref;
    for (int j = 1; j < 10; ++j)
      levels += ", " + ref;
    levels += "]";
  }
  std::string yaml =
      "name: p\nsteps:\n  v:\n    type: validate\n    inputs: {d: datasets.d}\n"
      "    expectations:\n      - {expect: allowed_values, column: c, values: [" +
      levels + "]}\n";
  auto spec = ParsePipelineSpec(yaml);
  ASSERT_FALSE(spec.has_value());
  EXPECT_EQ(spec.error().field, "steps.v.expectations[0]");
  EXPECT_NE(spec.error().message.find("too large"), std::string::npos) << spec.error().message;
}

// ---- parameters of a run ----

PipelineSpec ParamSpec() {
  return MustParse(R"(name: params
params:
  depth: {type: int, default: 4}
  lr: {type: float, default: 0.1}
  flag: {type: bool, default: false}
  target: {type: string}
steps:
  a: {command: "true"}
)");
}

TEST(ResolveParams, DefaultsOverriddenByGivenValues) {
  auto resolved = ResolveParams(ParamSpec(), {{"target", "label"}, {"depth", "8"}});
  ASSERT_TRUE(resolved.has_value()) << resolved.error().ToString();
  EXPECT_EQ(*resolved,
            (StringMap{{"depth", "8"}, {"flag", "false"}, {"lr", "0.1"}, {"target", "label"}}));
}

TEST(ResolveParams, ValuesComeBackCanonical) {
  struct Case {
    const char* param;
    const char* given;
    const char* want;
  };
  for (const Case& c :
       {Case{"depth", "007", "7"}, Case{"depth", "+5", "5"}, Case{"depth", "-0", "0"},
        Case{"depth", "-12", "-12"}, Case{"flag", "YES", "true"}, Case{"flag", "1", "true"},
        Case{"flag", "no", "false"}, Case{"flag", "False", "false"}, Case{"lr", "1e-3", "1e-3"},
        Case{"lr", "3", "3"}}) {
    auto resolved = ResolveParams(ParamSpec(), {{"target", "t"}, {c.param, c.given}});
    ASSERT_TRUE(resolved.has_value()) << c.given << ": " << resolved.error().ToString();
    EXPECT_EQ(resolved->at(c.param), c.want) << c.param << " = " << c.given;
  }
}

TEST(ResolveParams, RejectsUnknownMistypedAndMissing) {
  struct Case {
    StringMap given;
    const char* field;
    const char* message;
  };
  const Case cases[] = {
      {{{"target", "t"}, {"detph", "3"}}, "params.detph", "unknown parameter \"detph\""},
      {{{"target", "t"}, {"depth", "3.5"}}, "params.depth", "must be an int"},
      {{{"target", "t"}, {"depth", "0x10"}}, "params.depth", "must be an int"},
      {{{"target", "t"}, {"depth", "99999999999999999999"}}, "params.depth", "must be an int"},
      {{{"target", "t"}, {"depth", ""}}, "params.depth", "must be an int"},
      {{{"target", "t"}, {"lr", "fast"}}, "params.lr", "must be a finite float"},
      {{{"target", "t"}, {"lr", "inf"}}, "params.lr", "must be a finite float"},
      {{{"target", "t"}, {"lr", "nan"}}, "params.lr", "must be a finite float"},
      {{{"target", "t"}, {"lr", " 1"}}, "params.lr", "must be a finite float"},
      {{{"target", "t"}, {"flag", "on"}}, "params.flag", "must be a bool"},
      {{}, "params.target", "required"},
  };
  for (const Case& c : cases) {
    auto resolved = ResolveParams(ParamSpec(), c.given);
    ASSERT_FALSE(resolved.has_value()) << c.field;
    EXPECT_EQ(resolved.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_EQ(resolved.error().field, c.field);
    EXPECT_NE(resolved.error().message.find(c.message), std::string::npos)
        << resolved.error().message;
  }
}

TEST(ParamsUsedBy, OnlyTheParamsInCommandAndEnv) {
  PipelineSpec spec = MustParse(R"(name: used
params: {a: 1, b: 2, c: 3, d: 4}
steps:
  s:
    command: [run, "{{params.b}}", "{{ params.a }}-{{params.b}}"]
    env: {D: "{{params.d}}", X: plain}
  t:
    command: "echo {{run.id}}"
)");
  EXPECT_EQ(ParamsUsedBy(*spec.FindStep("s")), (std::vector<std::string>{"a", "b", "d"}));
  EXPECT_TRUE(ParamsUsedBy(*spec.FindStep("t")).empty());
}

// ---- rendering ----

RenderContext Context() {
  RenderContext ctx;
  ctx.inputs = {{"data", "/runs/r1/ingest/raw.csv"}};
  ctx.outputs = {{"model", "/runs/r1/train/model.json"}};
  ctx.params = {{"depth", "4"}};
  ctx.run_id = "r1";
  ctx.step_dir = "/runs/r1/train";
  return ctx;
}

TEST(Render, StringCommandRunsThroughTheShell) {
  PipelineSpec spec = MustParse(R"(name: render
params: {depth: 4}
steps:
  train:
    command: python3 train.py --data {{inputs.data}} --depth {{ params.depth }} --out {{outputs.model}}; echo {{run.id}}
    inputs: {data: datasets.raw}
    outputs: {model: model.json}
)");
  auto argv = RenderCommand(spec.steps[0], Context());
  ASSERT_TRUE(argv.has_value()) << argv.error().ToString();
  EXPECT_EQ(*argv, (std::vector<std::string>{
                       "/bin/sh", "-c",
                       "python3 train.py --data /runs/r1/ingest/raw.csv --depth 4 --out "
                       "/runs/r1/train/model.json; echo r1"}));
}

TEST(Render, ArgvCommandKeepsItsArguments) {
  PipelineSpec spec = MustParse(R"(name: render
params: {depth: 4}
steps:
  train:
    command: [python3, train.py, "--data={{inputs.data}}", --depth, "{{params.depth}}", "{{step.dir}}/log", "{{ not closed"]
    inputs: {data: datasets.raw}
)");
  auto argv = RenderCommand(spec.steps[0], Context());
  ASSERT_TRUE(argv.has_value()) << argv.error().ToString();
  EXPECT_EQ(*argv,
            (std::vector<std::string>{"python3", "train.py", "--data=/runs/r1/ingest/raw.csv",
                                      "--depth", "4", "/runs/r1/train/log", "{{ not closed"}));
}

TEST(Render, EnvValuesAreSubstituted) {
  PipelineSpec spec = MustParse(R"(name: render
params: {depth: 4}
defaults:
  env: {RUN_ID: "{{run.id}}"}
steps:
  train:
    command: "true"
    outputs: {model: model.json}
    env: {MODEL_OUT: "{{outputs.model}}", DEPTH: "{{params.depth}}", PLAIN: "x"}
)");
  auto env = RenderEnv(spec.steps[0], Context());
  ASSERT_TRUE(env.has_value()) << env.error().ToString();
  EXPECT_EQ(*env, (StringMap{{"DEPTH", "4"},
                             {"MODEL_OUT", "/runs/r1/train/model.json"},
                             {"PLAIN", "x"},
                             {"RUN_ID", "r1"}}));
}

TEST(Render, MissingValueNamesThePlaceholder) {
  PipelineSpec spec = MustParse(R"(name: render
params: {depth: 4, width: 2}
steps:
  train:
    command: [train, "{{params.width}}"]
    env: {W: "{{ params.width }}"}
)");
  auto argv = RenderCommand(spec.steps[0], Context());
  ASSERT_FALSE(argv.has_value());
  EXPECT_EQ(argv.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(argv.error().field, "steps.train.command[1]");
  EXPECT_NE(argv.error().message.find("{{params.width}}"), std::string::npos);
  auto env = RenderEnv(spec.steps[0], Context());
  ASSERT_FALSE(env.has_value());
  EXPECT_EQ(env.error().field, "steps.train.env.W");
  EXPECT_NE(env.error().message.find("{{ params.width }}"), std::string::npos);
}

// ---- canonical JSON ----

TEST(PipelineSpecJson, EquivalentSpecsGiveEqualJson) {
  PipelineSpec shorthand = MustParse(R"(name: canon
params:
  lr: 0.25
  n: 3
steps:
  b:
    command: [echo, "{{params.lr}}"]
    inputs: {x: steps.a.outputs.o}
  a:
    command: "true"
    outputs: {o: out.csv}
)");
  PipelineSpec long_form = MustParse(R"(name: canon
project: default
experiment: canon
description: ""
params:
  n: {type: int, default: 3}
  lr: {type: float, default: 0.25}
defaults: {cache: true, retries: 0}
steps:
  a:
    type: command
    command: "true"
    outputs:
      o: {path: ./out.csv, kind: file}
    resources: {gpus: 0, nodes: 1}
    priority_class: dev
  b:
    command:
      - echo
      - "{{params.lr}}"
    inputs:
      x: steps.a.outputs.o
    after: []
    timeout_s: 0
triggers: []
)");
  EXPECT_EQ(shorthand.ToJson(), long_form.ToJson());
  EXPECT_EQ(core::CanonicalJson(shorthand.ToJson()), core::CanonicalJson(long_form.ToJson()));

  PipelineSpec different = MustParse(R"(name: canon
params:
  lr: 0.5
  n: 3
steps:
  b:
    command: [echo, "{{params.lr}}"]
    inputs: {x: steps.a.outputs.o}
  a:
    command: "true"
    outputs: {o: out.csv}
)");
  EXPECT_NE(shorthand.ToJson(), different.ToJson());
}

TEST(PipelineSpecJson, WritesEveryFieldWithStepsInTopologicalOrder) {
  Json json = MustParse(kExample).ToJson();
  EXPECT_EQ(json["name"], "breast-cancer");
  EXPECT_EQ(json["experiment"], "breast-cancer");
  EXPECT_EQ(json["params"]["max_depth"], (Json{{"type", "int"}, {"default", "4"}}));
  EXPECT_TRUE(json["params"]["target"]["default"].is_null());
  ASSERT_EQ(json["steps"].size(), 6u);
  EXPECT_EQ(json["steps"][0]["name"], "ingest");
  EXPECT_EQ(json["steps"][5]["name"], "register");
  const Json& train = json["steps"][3];
  EXPECT_EQ(train["name"], "train");
  for (const char* key : {"name", "type", "command", "env", "inputs", "outputs", "after", "code",
                          "resources", "priority_class", "image", "retries", "timeout_s", "cache",
                          "expectations", "model", "depends_on"}) {
    EXPECT_TRUE(train.contains(key)) << key;
  }
  EXPECT_EQ(train["inputs"]["train"]["source"], "step_output");
  EXPECT_EQ(train["outputs"]["model"]["kind"], "model");
  EXPECT_EQ(train["resources"],
            (Json{{"gpus", 0}, {"gpu_type", ""}, {"cpus", 2}, {"memory_mb", 512}, {"nodes", 1}}));
  EXPECT_EQ(train["depends_on"], (Json{"split", "validate"}));
  EXPECT_EQ(json["steps"][1]["expectations"].size(), 1u);
  EXPECT_EQ(json["triggers"][0]["kind"], "cron");
  EXPECT_EQ(json["triggers"][3]["params"]["max_depth"], "7");
}

// A run parameter in a string command is one shell word: it cannot inject
// shell syntax. Plain values (paths, numbers) stay as they are.
TEST(RenderCommand, StringCommandsSubstituteShellQuotedValues) {
  StepSpec step;
  step.name = "s";
  step.command = {"/bin/sh", "-c", "echo {{params.x}} > {{outputs.o}}"};
  RenderContext ctx;
  ctx.outputs["o"] = "/tmp/run/o.txt";
  ctx.params["x"] = "hi; rm -rf / #";
  auto r = RenderCommand(step, ctx);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)[2], "echo 'hi; rm -rf / #' > /tmp/run/o.txt");
  ctx.params["x"] = "it's";
  r = RenderCommand(step, ctx);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[2], "echo 'it'\\''s' > /tmp/run/o.txt");
  ctx.params["x"] = "0.25";
  r = RenderCommand(step, ctx);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[2], "echo 0.25 > /tmp/run/o.txt");
  // argv commands get values as they are: no shell reads them.
  step.command = {"python3", "train.py", "--name={{params.x}}"};
  ctx.params["x"] = "a b";
  r = RenderCommand(step, ctx);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[2], "--name=a b");
}

}  // namespace
}  // namespace kervan::pipelines

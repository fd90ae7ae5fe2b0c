#include "app/cli_pipelines.h"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "pipelines/spec.h"

namespace kervan::app {
namespace {

using core::Json;

Json Step(const std::string& name, const std::string& state, std::vector<std::string> deps,
          bool cached = false) {
  return {{"step", name},
          {"type", "command"},
          {"state", state},
          {"depends_on", deps},
          {"cached", cached}};
}

TEST(RenderDag, RunStepsIndentedByDepthWithStatesAndDependencies) {
  Json run = {
      {"id", "r1"},
      {"state", "Running"},
      {"steps",
       {Step("ingest", "Succeeded", {}), Step("validate", "Succeeded", {"ingest"}),
        Step("split", "Running", {"ingest", "validate"}), Step("train", "Pending", {"split"})}}};
  EXPECT_EQ(RenderDag(run),
            "[Succeeded] ingest\n"
            "[Succeeded]   validate   <- ingest\n"
            "[Running  ]     split    <- ingest, validate\n"
            "[Pending  ]       train  <- split\n");
}

TEST(RenderDag, DepthIsTheLongestPathFromARoot) {
  Json run = {{"steps",
               {Step("a", "Succeeded", {}), Step("b", "Succeeded", {}),
                Step("c", "Succeeded", {"a"}), Step("d", "Failed", {"b", "c"})}}};
  EXPECT_EQ(RenderDag(run),
            "[Succeeded] a\n"
            "[Succeeded] b\n"
            "[Succeeded]   c    <- a\n"
            "[Failed   ]     d  <- b, c\n");
}

TEST(RenderDag, MarksCacheHits) {
  Json run = {
      {"steps", {Step("ingest", "Succeeded", {}, true), Step("train", "Running", {"ingest"})}}};
  EXPECT_EQ(RenderDag(run),
            "[Succeeded] ingest (cached)\n"
            "[Running  ]   train          <- ingest\n");
}

TEST(RenderDag, SpecStepsShowTheirTypeAndAVersionRendersItsSpec) {
  Json spec = {{"name", "p"},
               {"steps",
                {{{"name", "ingest"}, {"type", "command"}, {"depends_on", Json::array()}},
                 {{"name", "check"}, {"type", "validate"}, {"depends_on", {"ingest"}}}}}};
  const std::string want =
      "[command ] ingest\n"
      "[validate]   check  <- ingest\n";
  EXPECT_EQ(RenderDag(spec), want);
  EXPECT_EQ(RenderDag(Json{{"name", "p"}, {"version", 3}, {"spec", spec}}), want);
}

TEST(RenderDag, NothingToRenderIsEmpty) {
  EXPECT_EQ(RenderDag(Json::object()), "");
  EXPECT_EQ(RenderDag(Json{{"id", "r1"}, {"state", "Pending"}}), "");
  EXPECT_EQ(RenderDag(Json::array()), "");
  EXPECT_EQ(RenderDag(Json{{"steps", "nope"}}), "");
}

std::string Workdir(const std::string& yaml) {
  YAML::Node root = YAML::Load(yaml);
  return root["workdir"] ? root["workdir"].as<std::string>() : "<absent>";
}

TEST(WithWorkdir, AppendsTheDirectoryWhenAbsentKeepingLineNumbers) {
  const std::string yaml = "# comment\nname: p\nsteps:\n  a:\n    command: echo hi\n";
  std::string out = WithWorkdir(yaml, "/home/me/p");
  EXPECT_EQ(out, yaml + "workdir: \"/home/me/p\"\n");
  // No final newline: one is added before the key.
  EXPECT_EQ(WithWorkdir("name: p", "/d"), "name: p\nworkdir: \"/d\"\n");
}

TEST(WithWorkdir, KeepsAnAbsoluteWorkdir) {
  const std::string yaml = "name: p\nworkdir: /srv/code  # here\n";
  EXPECT_EQ(WithWorkdir(yaml, "/home/me"), yaml);
}

TEST(WithWorkdir, MakesARelativeWorkdirAbsoluteAgainstTheSpecDirectory) {
  std::string out = WithWorkdir("name: p\nworkdir: ../code/\nsteps: {}\n", "/home/me/specs");
  EXPECT_EQ(out, "name: p\nworkdir: \"/home/me/code\"\nsteps: {}\n");
}

TEST(WithWorkdir, FillsAnEmptyOrNullWorkdir) {
  EXPECT_EQ(WithWorkdir("name: p\nworkdir:\n", "/d"), "name: p\nworkdir: \"/d\"\n");
  EXPECT_EQ(WithWorkdir("name: p\nworkdir: \"\"\n", "/d"), "name: p\nworkdir: \"/d\"\n");
}

TEST(WithWorkdir, QuotesAwkwardPaths) {
  const std::string dir = "/tmp/a \"quoted\" dir\\x: #1";
  EXPECT_EQ(Workdir(WithWorkdir("name: p\n", dir)), dir);
}

TEST(WithWorkdir, ReEmitsWhenAppendingWouldChangeTheDocument) {
  // Flow style: a line after it would not be part of the mapping.
  std::string out = WithWorkdir("{name: p, steps: {}}\n", "/d");
  EXPECT_EQ(Workdir(out), "/d");
  EXPECT_EQ(YAML::Load(out)["name"].as<std::string>(), "p");
  // An explicit end of document.
  out = WithWorkdir("name: p\n...\n", "/d");
  EXPECT_EQ(Workdir(out), "/d");
  EXPECT_EQ(YAML::Load(out)["name"].as<std::string>(), "p");
  // A workdir whose value is not on its line.
  out = WithWorkdir("name: p\nworkdir:\n  code\n", "/d");
  EXPECT_EQ(Workdir(out), "/d/code");
}

TEST(WithWorkdir, LeavesWhatIsNotAMappingToTheServer) {
  EXPECT_EQ(WithWorkdir("name: [p\n", "/d"), "name: [p\n");
  EXPECT_EQ(WithWorkdir("- a\n- b\n", "/d"), "- a\n- b\n");
  EXPECT_EQ(WithWorkdir("", "/d"), "");
  EXPECT_EQ(WithWorkdir("name: p\nworkdir: [a]\n", "/d"), "name: p\nworkdir: [a]\n");
}

TEST(WithWorkdir, TheExampleSpecGetsItsDirectory) {
  const std::string dir = std::string(KERVAN_SOURCE_DIR) + "/examples/pipelines/breast-cancer";
  std::ifstream in(dir + "/pipeline.yaml");
  ASSERT_TRUE(in) << dir;
  std::stringstream text;
  text << in.rdbuf();
  auto spec = pipelines::ParsePipelineSpec(WithWorkdir(text.str(), dir));
  ASSERT_TRUE(spec) << spec.error().message;
  EXPECT_EQ(spec->workdir, dir);
  EXPECT_EQ(spec->name, "breast-cancer");
}

}  // namespace
}  // namespace kervan::app

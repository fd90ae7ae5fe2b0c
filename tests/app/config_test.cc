#include "app/config.h"

#include <filesystem>
#include <fstream>

#include <stdlib.h>

#include <gtest/gtest.h>

namespace kervan::app {
namespace {

std::string WriteFile(const std::string& text) {
  auto path =
      std::filesystem::temp_directory_path() / ("kervan-config-" + core::NewUuidV7() + ".yaml");
  std::ofstream(path) << text;
  return path.string();
}

TEST(Config, DefaultsAreEmbeddedSqlite) {
  auto c = LoadConfig({.read_env = false});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->store_backend, "sqlite");
  EXPECT_EQ(c->server_port, 8080);
  EXPECT_EQ(c->sqlite_path, "./var/kervan/kervan.db");
  EXPECT_EQ(c->effective.at("server.port").second, "default");
}

TEST(Config, FileThenEnvThenFlagsWin) {
  std::string file = WriteFile("server:\n  port: 9000\n  io_threads: 3\nlog:\n  level: warn\n");
  setenv("KERVAN_SERVER_PORT", "9100", 1);
  auto c = LoadConfig({.file = file, .overrides = {"log.level=debug"}});
  unsetenv("KERVAN_SERVER_PORT");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->io_threads, 3);
  EXPECT_EQ(c->server_port, 9100);
  EXPECT_EQ(c->effective.at("server.port").second, "env:KERVAN_SERVER_PORT");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->effective.at("log.level").second, "flag");
  std::filesystem::remove(file);
}

TEST(Config, UnknownKeyNamesKeyAndSource) {
  std::string file = WriteFile("server:\n  prot: 9000\n");
  auto c = LoadConfig({.file = file, .read_env = false});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().field, "server.prot");
  EXPECT_NE(c.error().message.find(file), std::string::npos);
  std::filesystem::remove(file);
}

TEST(Config, BadValuesAreRejectedWithTheirSource) {
  auto port = LoadConfig({.overrides = {"server.port=70000"}, .read_env = false});
  ASSERT_FALSE(port);
  EXPECT_NE(port.error().message.find("between 0 and 65535"), std::string::npos);
  EXPECT_NE(port.error().message.find("from flag"), std::string::npos);
  auto backend = LoadConfig({.overrides = {"store.backend=mysql"}, .read_env = false});
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().field, "store.backend");
  auto no_dsn = LoadConfig({.overrides = {"store.backend=postgres"}, .read_env = false});
  ASSERT_FALSE(no_dsn);
  EXPECT_EQ(no_dsn.error().field, "store.postgres.dsn");
  auto bad_yaml = LoadConfig({.file = WriteFile("server: [unclosed\n"), .read_env = false});
  EXPECT_FALSE(bad_yaml);
}

TEST(Config, JobKeysAreCheckedAtLoad) {
  auto ok = LoadConfig({.overrides = {"jobs.quotas=risk=4:2,vision=2", "jobs.virtual_gpus=8",
                                      "jobs.executor=slurm", "jobs.policy=strict"},
                        .read_env = false});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->jobs_virtual_gpus, 8);
  EXPECT_EQ(ok->jobs_executor, "slurm");
  EXPECT_EQ(ok->jobs_scratch_dir, "./var/kervan/jobs");
  for (const auto& [override_value, key] : std::vector<std::pair<std::string, std::string>>{
           {"jobs.executor=docker", "jobs.executor"},
           {"jobs.policy=random", "jobs.policy"},
           {"jobs.priority_classes=prod", "jobs.priority_classes"},
           {"jobs.quotas=risk=-4", "jobs.quotas"},
           {"jobs.virtual_gpus=-1", "jobs.virtual_gpus"},
           {"jobs.cycle_ms=0", "jobs.cycle_ms"}}) {
    auto bad = LoadConfig({.overrides = {override_value}, .read_env = false});
    ASSERT_FALSE(bad) << override_value;
    EXPECT_EQ(bad.error().field, key) << bad.error().message;
  }
}

TEST(Config, ShowMasksSecrets) {
  auto c = LoadConfig({.overrides = {"store.backend=postgres",
                                     "store.postgres.dsn=host=db user=k password=hunter2"},
                       .read_env = false});
  ASSERT_TRUE(c) << c.error().message;
  std::string shown = RenderConfig(*c);
  EXPECT_EQ(shown.find("hunter2"), std::string::npos);
  EXPECT_NE(shown.find("password=*****"), std::string::npos);
  EXPECT_EQ(ConfigToJson(*c).dump().find("hunter2"), std::string::npos);
}

TEST(Config, ShippedFilesLoad) {
  for (const char* f : {"config/dev.yaml", "config/prod.yaml"}) {
    auto c = LoadConfig({.file = std::string(KERVAN_SOURCE_DIR) + "/" + f, .read_env = false});
    ASSERT_TRUE(c) << f << ": " << c.error().message;
  }
}

}  // namespace
}  // namespace kervan::app

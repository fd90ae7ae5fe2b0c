// The local filesystem store: behaviour, and that nothing — "..", absolute
// paths, or symbolic links planted inside the root — reaches outside it.
#include <atomic>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"

namespace kervan::artifacts {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() / "root";
    outside_ = tmp_.path() / "outside";
    WriteFile(outside_ / "secret.txt", "TOP SECRET");
    auto store = OpenLocal(root_);
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(store).value();
  }

  std::vector<std::string> Names(std::string_view dir) {
    auto list = store_->List(dir);
    EXPECT_TRUE(list) << list.error().ToString();
    std::vector<std::string> out;
    if (list) {
      for (const FileInfo& f : *list)
        out.push_back(f.path + (f.is_dir ? "/" : ""));
    }
    return out;
  }

  // The outside tree is exactly as SetUp left it.
  void ExpectOutsideUntouched() {
    EXPECT_EQ(ReadFile(outside_ / "secret.txt"), "TOP SECRET");
    size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::recursive_directory_iterator(outside_))
      ++entries;
    EXPECT_EQ(entries, 1u);
  }

  TempDir tmp_;
  std::filesystem::path root_;
  std::filesystem::path outside_;
  std::unique_ptr<ArtifactStore> store_;
};

TEST_F(LocalStoreTest, OpenCreatesTheRootAndDescribesIt) {
  EXPECT_TRUE(std::filesystem::is_directory(root_));
  EXPECT_EQ(store_->Describe(), "file:" + root_.string());
  EXPECT_FALSE(OpenLocal(""));
  WriteFile(tmp_.path() / "a-file", "x");
  auto on_file = OpenLocal(tmp_.path() / "a-file" / "root");
  ASSERT_FALSE(on_file);
  EXPECT_EQ(on_file.error().code, core::ErrorCode::kFailedPrecondition);
}

TEST_F(LocalStoreTest, PutGetListDeleteWithNestedDirectories) {
  ASSERT_TRUE(store_->Put("1/run/artifacts/model/MLmodel", "flavors: {}\n"));
  ASSERT_TRUE(store_->Put("1/run/artifacts/model/model.pkl", std::string(1000, '\x01')));
  ASSERT_TRUE(store_->Put("1/run/artifacts/metrics.json", "{}"));
  ASSERT_TRUE(store_->Put("1/run/artifacts/empty.txt", ""));

  auto got = store_->Get("1/run/artifacts/model/MLmodel");
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(*got, "flavors: {}\n");
  EXPECT_EQ(*store_->Get("1/run/artifacts/empty.txt"), "");
  EXPECT_EQ(ReadFile(root_ / "1/run/artifacts/model/model.pkl"), std::string(1000, '\x01'));

  auto list = store_->List("1/run/artifacts");
  ASSERT_TRUE(list) << list.error().ToString();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].path, "empty.txt");
  EXPECT_EQ((*list)[1].path, "metrics.json");
  EXPECT_FALSE((*list)[1].is_dir);
  EXPECT_EQ((*list)[1].size, 2);
  EXPECT_EQ((*list)[2].path, "model");
  EXPECT_TRUE((*list)[2].is_dir);
  EXPECT_EQ(Names("1/run/artifacts/model/"), (std::vector<std::string>{"MLmodel", "model.pkl"}));
  EXPECT_EQ(Names(""), (std::vector<std::string>{"1/"}));

  ASSERT_TRUE(store_->Delete("1/run/artifacts/model"));
  EXPECT_EQ(Names("1/run/artifacts"), (std::vector<std::string>{"empty.txt", "metrics.json"}));
  EXPECT_FALSE(std::filesystem::exists(root_ / "1/run/artifacts/model"));
  ASSERT_TRUE(store_->Delete("1/run/artifacts/metrics.json"));
  EXPECT_EQ(Names("1/run/artifacts"), (std::vector<std::string>{"empty.txt"}));
}

TEST_F(LocalStoreTest, PutReplacesAndLeavesNoTemporaryFiles) {
  ASSERT_TRUE(store_->Put("a/b.txt", "first version, longer"));
  ASSERT_TRUE(store_->Put("a/b.txt", "second"));
  EXPECT_EQ(*store_->Get("a/b.txt"), "second");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(root_ / "a"))
    ++entries;
  EXPECT_EQ(entries, 1u);
}

TEST_F(LocalStoreTest, ListingsShowExactlyTheAddressableNames) {
  ASSERT_TRUE(store_->Put("dir/a:b.txt", "x"));  // ':' is fine past the first segment
  ASSERT_TRUE(store_->Put("dir/ünï code.txt", "x"));
  WriteFile(root_ / "dir" / "bad#name", "x");  // no client path can name these
  WriteFile(root_ / "dir" / "bad\\name", "x");
  WriteFile(root_ / "c:drive", "x");
  EXPECT_EQ(Names("dir"), (std::vector<std::string>{"a:b.txt", "ünï code.txt"}));
  EXPECT_EQ(Names(""), (std::vector<std::string>{"dir/"}));
}

TEST_F(LocalStoreTest, MissingThingsAreNotFoundOrEmpty) {
  auto missing = store_->Get("nope.txt");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, core::ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message, "artifact \"nope.txt\" does not exist");
  EXPECT_EQ(store_->Get("no/such/dir/x").error().code, core::ErrorCode::kNotFound);
  EXPECT_EQ(store_->Delete("nope").error().code, core::ErrorCode::kNotFound);
  EXPECT_EQ(store_->Delete("no/such/x").error().code, core::ErrorCode::kNotFound);
  EXPECT_TRUE(Names("no/such/dir").empty());
  ASSERT_TRUE(store_->Put("file.txt", "x"));
  EXPECT_TRUE(Names("file.txt").empty());  // a file lists as empty
}

TEST_F(LocalStoreTest, FilesAndDirectoriesDoNotReplaceEachOther) {
  ASSERT_TRUE(store_->Put("dir/child.txt", "x"));
  auto onto_dir = store_->Put("dir", "y");
  ASSERT_FALSE(onto_dir);
  EXPECT_EQ(onto_dir.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_NE(onto_dir.error().message.find("is a directory"), std::string::npos);
  auto get_dir = store_->Get("dir");
  ASSERT_FALSE(get_dir);
  EXPECT_EQ(get_dir.error().code, core::ErrorCode::kFailedPrecondition);

  ASSERT_TRUE(store_->Put("file.txt", "x"));
  auto under_file = store_->Put("file.txt/child", "y");
  ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_NE(under_file.error().message.find("is a file, not a directory"), std::string::npos);
  EXPECT_EQ(*store_->Get("dir/child.txt"), "x");
}

TEST_F(LocalStoreTest, EveryMethodRefusesTraversingPaths) {
  WriteFile(tmp_.path() / "sibling.txt", "SIBLING");
  const std::string bad[] = {
      "../outside/secret.txt", "../sibling.txt",      "/etc/passwd",
      "//etc/passwd",          "a/../../sibling.txt", "..\\sibling.txt",
      "%2e%2e/sibling.txt",    "..%2fsibling.txt",    "%252e%252e/sibling.txt",
      "file:///etc/passwd",    "sibling.txt#/../..",  std::string("a\0/../x", 7)};
  for (const std::string& path : bad) {
    auto get = store_->Get(path);
    ASSERT_FALSE(get) << path;
    EXPECT_EQ(get.error().code, core::ErrorCode::kInvalidArgument) << path;
    EXPECT_EQ(store_->Put(path, "PWNED").error().code, core::ErrorCode::kInvalidArgument) << path;
    EXPECT_EQ(store_->Delete(path).error().code, core::ErrorCode::kInvalidArgument) << path;
    EXPECT_EQ(store_->List(path).error().code, core::ErrorCode::kInvalidArgument) << path;
  }
  EXPECT_EQ(ReadFile(tmp_.path() / "sibling.txt"), "SIBLING");
  ExpectOutsideUntouched();
  EXPECT_TRUE(Names("").empty());
}

TEST_F(LocalStoreTest, SymlinkToAnOutsideDirectoryIsNeverFollowed) {
  std::filesystem::create_directory_symlink(outside_, root_ / "escape");
  std::filesystem::create_directories(root_ / "1/run");
  std::filesystem::create_directory_symlink("/etc", root_ / "1/run/etc");

  auto read = store_->Get("escape/secret.txt");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_NE(read.error().message.find("symbolic link"), std::string::npos) << read.error().message;
  EXPECT_FALSE(store_->Get("1/run/etc/passwd"));
  EXPECT_FALSE(store_->Get("1/run/etc/hostname"));

  EXPECT_FALSE(store_->Put("escape/new.txt", "PWNED"));
  EXPECT_FALSE(store_->Put("escape/secret.txt", "PWNED"));
  EXPECT_FALSE(store_->Put("1/run/etc/kervan-pwned", "PWNED"));
  EXPECT_FALSE(std::filesystem::exists("/etc/kervan-pwned"));

  EXPECT_TRUE(Names("escape").empty());
  EXPECT_TRUE(Names("1/run/etc").empty());
  EXPECT_EQ(Names(""), (std::vector<std::string>{"1/"}));  // the link itself is not listed
  EXPECT_TRUE(Names("1/run").empty());

  EXPECT_FALSE(store_->Delete("escape/secret.txt"));
  // Deleting the link removes the link only.
  ASSERT_TRUE(store_->Delete("escape"));
  EXPECT_FALSE(std::filesystem::is_symlink(root_ / "escape"));
  // A directory holding a link to /etc is removed without touching /etc.
  ASSERT_TRUE(store_->Delete("1"));
  EXPECT_TRUE(std::filesystem::exists("/etc/passwd"));
  ExpectOutsideUntouched();
}

TEST_F(LocalStoreTest, SymlinkToASiblingDirectoryIsNeverFollowed) {
  // root/shared -> ../outside: a relative link to a sibling of the root.
  std::filesystem::create_directory_symlink("../outside", root_ / "shared");
  EXPECT_FALSE(store_->Get("shared/secret.txt"));
  EXPECT_FALSE(store_->Put("shared/x/y.txt", "PWNED"));
  EXPECT_TRUE(Names("shared").empty());
  ExpectOutsideUntouched();
}

TEST_F(LocalStoreTest, SymlinkedFilesAreNeitherReadNorWrittenThrough) {
  std::filesystem::create_directories(root_ / "run");
  std::filesystem::create_symlink(outside_ / "secret.txt", root_ / "run/secret.txt");
  std::filesystem::create_symlink("/etc/passwd", root_ / "run/passwd");

  auto read = store_->Get("run/secret.txt");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_FALSE(store_->Get("run/passwd"));
  EXPECT_TRUE(Names("run").empty());

  // Writing replaces the link itself; its target stays as it was.
  ASSERT_TRUE(store_->Put("run/secret.txt", "mine"));
  EXPECT_FALSE(std::filesystem::is_symlink(root_ / "run/secret.txt"));
  EXPECT_EQ(*store_->Get("run/secret.txt"), "mine");
  ASSERT_TRUE(store_->Delete("run/passwd"));
  EXPECT_TRUE(std::filesystem::exists("/etc/passwd"));
  ExpectOutsideUntouched();
}

TEST_F(LocalStoreTest, SpecialFilesAreRefusedWithoutBlocking) {
  ASSERT_EQ(::mkfifo((root_ / "fifo").c_str(), 0644), 0);
  auto read = store_->Get("fifo");  // would hang if opened blocking
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(Names("").empty());
}

TEST_F(LocalStoreTest, TheRootMayItselfBeALink) {
  std::filesystem::create_directory_symlink(root_, tmp_.path() / "root-link");
  auto store = OpenLocal(tmp_.path() / "root-link");
  ASSERT_TRUE(store) << store.error().ToString();
  ASSERT_TRUE((*store)->Put("x.txt", "via link"));
  EXPECT_EQ(ReadFile(root_ / "x.txt"), "via link");
}

TEST_F(LocalStoreTest, ConcurrentWritersLeaveOneWholeBlob) {
  const std::string a(256 * 1024, 'a');
  const std::string b(256 * 1024, 'b');
  ASSERT_TRUE(store_->Put("blob", a));
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  std::thread reader([&] {
    while (!stop) {
      auto got = store_->Get("blob");
      if (got && *got != a && *got != b)
        ++torn;
    }
  });
  std::thread writer_a([&] {
    for (int i = 0; i < 30; ++i)
      EXPECT_TRUE(store_->Put("blob", a));
  });
  std::thread writer_b([&] {
    for (int i = 0; i < 30; ++i)
      EXPECT_TRUE(store_->Put("blob", b));
  });
  writer_a.join();
  writer_b.join();
  stop = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(Names(""), (std::vector<std::string>{"blob"}));
}

}  // namespace
}  // namespace kervan::artifacts

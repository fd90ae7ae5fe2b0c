# The two commands of the README, and a few helpers.
.PHONY: demo test build bench format clean

demo:            ## build, start a server on SQLite, tokens + registry walkthrough, audit trail, verify
	bash scripts/demo.sh

test:            ## the full test suite (what CI runs)
	bash scripts/test.sh

build:
	bash scripts/setup.sh
	cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build

bench:           ## benchmarks; results go to docs/performance.md by hand
	bash bench/run.sh

format:
	clang-format -i $$(git ls-files '*.h' '*.cc')

clean:
	rm -rf build build-asan build-bench

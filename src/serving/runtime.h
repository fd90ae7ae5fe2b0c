// Model runtimes behind one interface, and the request formats the gateway
// accepts: JSON rows ({"instances": [...]}) and Open Inference Protocol (KServe
// v2) tensors. Part of serving's public header.
//
// Runtimes:
//   xgboost  in-process through XGBoost's C API (libxgboost), from the JSON
//            model format (Booster.save_model("model.json")).
//   http     any external server that speaks the Open Inference Protocol v2
//            over REST: POST <url>/infer with one FP32 tensor [N, F].
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/core.h"

namespace kervan::serving {

using core::Json;
using core::Result;
using core::Status;

// core::FailedPrecondition / core::NotFound naming the offending field.
core::Error Refused(std::string message, std::string field = {});
core::Error Missing(std::string message, std::string field = {});

// The features a model takes, in order. Names may be empty (unnamed
// columns: requests must then send rows as arrays).
struct InputSchema {
  int64_t num_features = 0;
  std::vector<std::string> names;  // empty, or num_features names
  Json ToJson() const;             // {"inputs": [{"name", "datatype": "FP32"}...]}
};

// Rows for one prediction: row-major, `rows` x `cols` float32; NaN = missing.
struct Batch {
  int64_t rows = 0, cols = 0;
  std::vector<float> values;
};

// Outputs, row-major: `rows` x `per_row` (1 for a binary classifier's
// probability or a regression value).
struct Prediction {
  int64_t rows = 0, per_row = 1;
  std::vector<double> values;
  double first(int64_t row) const { return values[static_cast<size_t>(row * per_row)]; }
};

class ModelRuntime {
 public:
  virtual ~ModelRuntime() = default;
  virtual std::string_view kind() const = 0;  // "xgboost", "http"
  virtual const InputSchema& schema() const = 0;
  // Thread-safe. `batch.cols` equals schema().num_features (the gateway
  // checks). An error is the model's failure (counted as an error of the
  // version that answered), never a caller's mistake.
  virtual Result<Prediction> Predict(const Batch& batch) = 0;
};

// Loads an XGBoost model from the bytes of its JSON (or UBJSON) model file.
// The schema comes from the model (its feature count and names); when
// `signature` declares inputs ({"inputs": [{"name": ...}, ...]}), they must
// match the model's: their count its feature count, their names its feature
// names (when it records them). kInvalidArgument naming the mismatch.
Result<std::unique_ptr<ModelRuntime>> LoadXgboostModel(std::string_view model_bytes,
                                                       const Json& signature);

struct UpstreamOptions {
  std::string url;  // "http://host:port/v2/models/<name>" (the infer URL is url + "/infer")
  std::chrono::milliseconds timeout{2000};
};
// An external Open Inference Protocol server. The schema is the signature's
// inputs (required: the gateway validates requests before they leave).
// Connecting does not call the upstream; a broken upstream shows up as
// Predict errors (kUnavailable / kDeadlineExceeded / kInternal).
Result<std::unique_ptr<ModelRuntime>> ConnectUpstream(const UpstreamOptions& options,
                                                      const Json& signature);

// ---------------------------------------------------------------------------
// Request formats. Errors are kInvalidArgument naming the field, e.g.
// "instances[2]" (wrong length), "instances[0].mean_radius" (missing or not
// a number), "inputs[0].shape".

// {"instances": [[f1, f2, ...], ...]} or {"instances": [{"name": v, ...}, ...]}
// (objects need a named schema; extra keys are refused). At most max_rows rows.
Result<Batch> ParseInstances(const Json& body, const InputSchema& schema, int64_t max_rows);

// Open Inference Protocol request: {"id"?, "parameters"?, "inputs": [...],
// "outputs"?}. Either one tensor of shape [N, F] (or [F] for one row), or
// one tensor per feature, named as the schema's features, each of shape
// [N] or [N, 1]. Datatypes FP32, FP64, INT8..INT64, UINT8..UINT64, BOOL;
// "data" flat (row-major) or nested.
Result<Batch> ParseOipRequest(const Json& body, const InputSchema& schema, int64_t max_rows);

// The OIP response body.
Json OipResponse(const std::string& model_name, const std::string& model_version,
                 const std::string& id, const Prediction& prediction);

}  // namespace kervan::serving

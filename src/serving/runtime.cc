// Model runtimes (XGBoost C API, OIP HTTP upstream) and request parsing.
#include "serving/runtime.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <xgboost/c_api.h>

#include "http/http.h"

namespace kervan::serving {
namespace {

core::Error XgbError(std::string_view what) {
  return core::InvalidArgument(fmt::format("{}: {}", what, XGBGetLastError()), "model");
}

// The signature's declared input names, nullopt when it declares none.
Result<std::optional<std::vector<std::string>>> DeclaredInputs(const Json& signature) {
  if (signature.is_null() || !signature.is_object() || !signature.contains("inputs"))
    return std::optional<std::vector<std::string>>();
  const Json& inputs = signature["inputs"];
  if (!inputs.is_array()) {
    return core::InvalidArgument("the version's signature: \"inputs\" must be an array",
                                 "signature.inputs");
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Json& in = inputs[i];
    if (in.is_object() && in.contains("name") && in["name"].is_string())
      names.push_back(in["name"].get<std::string>());
    else if (in.is_string())
      names.push_back(in.get<std::string>());
    else
      return core::InvalidArgument(
          fmt::format("the version's signature: inputs[{}] has no name", i),
          fmt::format("signature.inputs[{}]", i));
  }
  return std::optional<std::vector<std::string>>(std::move(names));
}

// One proxy DMatrix per thread for inplace prediction. Without one, XGBoost
// makes a proxy per call, and making one reads the cgroup CPU quota files
// (open/read/close): most of a one-row prediction's cost (perf on this
// machine: 28 us per prediction without, see docs/performance.md
// "Serving"). A proxy holds the current call's data, so it is per thread.
DMatrixHandle ThreadProxy() {
  struct Holder {
    DMatrixHandle handle = nullptr;
    ~Holder() {
      if (handle != nullptr)
        XGDMatrixFree(handle);
    }
  };
  thread_local Holder holder;
  if (holder.handle == nullptr && XGProxyDMatrixCreate(&holder.handle) != 0)
    holder.handle = nullptr;
  return holder.handle;
}

class XgboostRuntime final : public ModelRuntime {
 public:
  explicit XgboostRuntime(BoosterHandle booster) : booster_(booster) {}
  ~XgboostRuntime() override { XGBoosterFree(booster_); }

  std::string_view kind() const override { return "xgboost"; }
  const InputSchema& schema() const override { return schema_; }

  Result<Prediction> Predict(const Batch& batch) override {
    // __array_interface__ (version 3) of the caller's buffer; no copy.
    std::string array =
        fmt::format(R"({{"data":[{},true],"shape":[{},{}],"typestr":"<f4","version":3}})",
                    reinterpret_cast<uintptr_t>(batch.values.data()), batch.rows, batch.cols);
    static constexpr const char* kConfig =
        R"({"type":0,"training":false,"iteration_begin":0,"iteration_end":0,)"
        R"("strict_shape":false,"missing":NaN,"cache_id":0})";
    const bst_ulong* shape = nullptr;
    bst_ulong dim = 0;
    const float* result = nullptr;
    // Inplace prediction is thread-safe; the result lives in thread-local
    // memory until this thread's next call, so it is copied out at once.
    if (XGBoosterPredictFromDense(booster_, array.c_str(), kConfig, ThreadProxy(), &shape, &dim,
                                  &result) != 0) {
      return core::Internal(fmt::format("xgboost prediction failed: {}", XGBGetLastError()));
    }
    Prediction p;
    p.rows = batch.rows;
    size_t total = 1;
    for (bst_ulong i = 0; i < dim; ++i)
      total *= shape[i];
    p.per_row = batch.rows > 0 ? static_cast<int64_t>(total) / batch.rows : 1;
    p.values.assign(result, result + total);
    return p;
  }

  InputSchema schema_;

 private:
  BoosterHandle booster_;
};

class UpstreamRuntime final : public ModelRuntime {
 public:
  UpstreamRuntime(UpstreamOptions options, InputSchema schema, std::string base,
                  std::string infer_target)
      : options_(std::move(options)),
        schema_(std::move(schema)),
        client_(std::move(base)),
        target_(std::move(infer_target)) {}

  std::string_view kind() const override { return "http"; }
  const InputSchema& schema() const override { return schema_; }

  Result<Prediction> Predict(const Batch& batch) override {
    Json data = Json::array();
    for (float v : batch.values)
      data.push_back(std::isnan(v) ? Json(nullptr) : Json(v));
    Json body{{"inputs", Json::array({Json{{"name", "input-0"},
                                           {"shape", Json::array({batch.rows, batch.cols})},
                                           {"datatype", "FP32"},
                                           {"data", std::move(data)}}})}};
    ASSIGN_OR_RETURN(http::ClientResponse resp,
                     client_.Send("POST", target_, body.dump(),
                                  {{"Content-Type", "application/json"}}, options_.timeout));
    if (resp.status != 200) {
      return core::Unavailable(fmt::format("upstream {} answered HTTP {}: {}", options_.url,
                                           resp.status, resp.body.substr(0, 200)));
    }
    Json out = Json::parse(resp.body, nullptr, false);
    if (out.is_discarded() || !out.is_object() || !out.contains("outputs") ||
        !out["outputs"].is_array() || out["outputs"].empty() || !out["outputs"][0].is_object() ||
        !out["outputs"][0].contains("data") || !out["outputs"][0]["data"].is_array()) {
      return core::Internal(
          fmt::format("upstream {} answered without outputs[0].data", options_.url));
    }
    Prediction p;
    p.rows = batch.rows;
    for (const Json& v : out["outputs"][0]["data"]) {
      if (!v.is_number())
        return core::Internal(fmt::format("upstream {} answered a non-number", options_.url));
      p.values.push_back(v.get<double>());
    }
    if (batch.rows == 0 || p.values.empty() ||
        p.values.size() % static_cast<size_t>(batch.rows) != 0) {
      return core::Internal(fmt::format("upstream {} answered {} values for {} rows", options_.url,
                                        p.values.size(), batch.rows));
    }
    p.per_row = static_cast<int64_t>(p.values.size()) / batch.rows;
    return p;
  }

 private:
  UpstreamOptions options_;
  InputSchema schema_;
  http::Client client_;
  std::string target_;
};

// Appends the numbers of a (possibly nested) JSON array to `out`.
Status Flatten(const Json& data, std::vector<float>& out, const std::string& field) {
  if (data.is_array()) {
    for (const Json& v : data)
      RETURN_IF_ERROR(Flatten(v, out, field));
    return core::Ok();
  }
  if (data.is_number()) {
    out.push_back(data.get<float>());
    return core::Ok();
  }
  if (data.is_boolean()) {
    out.push_back(data.get<bool>() ? 1.0f : 0.0f);
    return core::Ok();
  }
  if (data.is_null()) {
    out.push_back(std::numeric_limits<float>::quiet_NaN());
    return core::Ok();
  }
  return core::InvalidArgument(
      fmt::format("field \"{}\": must hold numbers, got {}", field, core::JsonTypeName(data)),
      field);
}

bool KnownDatatype(const std::string& t) {
  static const char* kTypes[] = {"FP16",  "FP32",  "FP64",   "INT8",   "INT16",  "INT32",
                                 "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BOOL"};
  for (const char* k : kTypes) {
    if (t == k)
      return true;
  }
  return false;
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

Result<Tensor> ParseTensor(const Json& in, const std::string& prefix) {
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(in, prefix));
  Tensor t;
  ASSIGN_OR_RETURN(t.name, r.RequiredString("name"));
  ASSIGN_OR_RETURN(std::string datatype, r.RequiredString("datatype"));
  if (!KnownDatatype(datatype)) {
    return core::InvalidArgument(
        fmt::format("field \"{}datatype\": unsupported datatype \"{}\" (numeric and BOOL "
                    "tensors only)",
                    prefix, datatype),
        prefix + "datatype");
  }
  ASSIGN_OR_RETURN(Json shape, r.OptionalArray("shape"));
  if (shape.empty() || shape.size() > 2) {
    return core::InvalidArgument(
        fmt::format("field \"{}shape\": must have 1 or 2 dimensions", prefix), prefix + "shape");
  }
  for (const Json& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > (1 << 24)) {
      return core::InvalidArgument(
          fmt::format("field \"{}shape\": must be non-negative integers", prefix),
          prefix + "shape");
    }
    t.shape.push_back(d.get<int64_t>());
  }
  ASSIGN_OR_RETURN(Json data, r.OptionalArray("data"));
  ASSIGN_OR_RETURN(Json params, r.OptionalObject("parameters"));
  (void)params;
  RETURN_IF_ERROR(r.Finish());
  RETURN_IF_ERROR(Flatten(data, t.data, prefix + "data"));
  int64_t expected = 1;
  for (int64_t d : t.shape)
    expected *= d;
  if (static_cast<int64_t>(t.data.size()) != expected) {
    return core::InvalidArgument(fmt::format("field \"{}data\": has {} values, shape {} needs {}",
                                             prefix, t.data.size(), shape.dump(), expected),
                                 prefix + "data");
  }
  return t;
}

}  // namespace

core::Error Refused(std::string message, std::string field) {
  core::Error e = core::FailedPrecondition(std::move(message));
  e.field = std::move(field);
  return e;
}

core::Error Missing(std::string message, std::string field) {
  core::Error e = core::NotFound(std::move(message));
  e.field = std::move(field);
  return e;
}

Json InputSchema::ToJson() const {
  Json inputs = Json::array();
  for (int64_t i = 0; i < num_features; ++i) {
    inputs.push_back({{"name", names.empty() ? fmt::format("f{}", i) : names[i]},
                      {"datatype", "FP32"},
                      {"shape", Json::array({-1})}});
  }
  return {{"inputs", inputs}};
}

Result<std::unique_ptr<ModelRuntime>> LoadXgboostModel(std::string_view model_bytes,
                                                       const Json& signature) {
  if (model_bytes.empty())
    return core::InvalidArgument("the model file is empty", "model");
  BoosterHandle booster = nullptr;
  if (XGBoosterCreate(nullptr, 0, &booster) != 0)
    return XgbError("cannot create an XGBoost booster");
  auto runtime = std::make_unique<XgboostRuntime>(booster);  // frees it on every path
  if (XGBoosterLoadModelFromBuffer(booster, model_bytes.data(), model_bytes.size()) != 0)
    return XgbError("not an XGBoost model");
  // One thread per prediction: the gateway's workers are the parallelism.
  if (XGBoosterSetParam(booster, "nthread", "1") != 0)
    return XgbError("cannot configure the model");
  bst_ulong features = 0;
  if (XGBoosterGetNumFeature(booster, &features) != 0)
    return XgbError("cannot read the model's feature count");
  runtime->schema_.num_features = static_cast<int64_t>(features);
  bst_ulong n = 0;
  const char** names = nullptr;
  if (XGBoosterGetStrFeatureInfo(booster, "feature_name", &n, &names) == 0 && n == features) {
    for (bst_ulong i = 0; i < n; ++i)
      runtime->schema_.names.emplace_back(names[i]);
  }
  ASSIGN_OR_RETURN(auto declared, DeclaredInputs(signature));
  if (declared) {
    if (static_cast<int64_t>(declared->size()) != runtime->schema_.num_features) {
      return core::InvalidArgument(
          fmt::format("the version's signature declares {} inputs, the model takes {} features",
                      declared->size(), runtime->schema_.num_features),
          "signature.inputs");
    }
    if (runtime->schema_.names.empty()) {
      runtime->schema_.names = *declared;
    } else {
      for (size_t i = 0; i < declared->size(); ++i) {
        if ((*declared)[i] != runtime->schema_.names[i]) {
          return core::InvalidArgument(
              fmt::format("the version's signature names input {} \"{}\", the model's "
                          "feature {} is \"{}\"",
                          i, (*declared)[i], i, runtime->schema_.names[i]),
              fmt::format("signature.inputs[{}]", i));
        }
      }
    }
  }
  return std::unique_ptr<ModelRuntime>(std::move(runtime));
}

Result<std::unique_ptr<ModelRuntime>> ConnectUpstream(const UpstreamOptions& options,
                                                      const Json& signature) {
  // http://host[:port]/path
  constexpr std::string_view kScheme = "http://";
  if (options.url.rfind(kScheme, 0) != 0) {
    return core::InvalidArgument(
        fmt::format("upstream URL \"{}\" must start with http://", options.url), "url");
  }
  size_t slash = options.url.find('/', kScheme.size());
  std::string base = slash == std::string::npos ? options.url : options.url.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : options.url.substr(slash);
  while (!path.empty() && path.back() == '/')
    path.pop_back();
  ASSIGN_OR_RETURN(auto declared, DeclaredInputs(signature));
  if (!declared || declared->empty()) {
    return core::InvalidArgument("an HTTP upstream model needs a signature declaring its inputs",
                                 "signature.inputs");
  }
  InputSchema schema{.num_features = static_cast<int64_t>(declared->size()), .names = *declared};
  return std::unique_ptr<ModelRuntime>(
      std::make_unique<UpstreamRuntime>(options, std::move(schema), base, path + "/infer"));
}

Result<Batch> ParseInstances(const Json& body, const InputSchema& schema, int64_t max_rows) {
  if (!body.is_object() || !body.contains("instances")) {
    return core::InvalidArgument("field \"instances\": is required (an array of rows)",
                                 "instances");
  }
  for (const auto& [key, value] : body.items()) {
    if (key != "instances" && key != "parameters") {
      return core::InvalidArgument(fmt::format("field \"{}\": unknown field", key), key);
    }
  }
  const Json& rows = body["instances"];
  if (!rows.is_array() || rows.empty()) {
    return core::InvalidArgument("field \"instances\": must be a non-empty array of rows",
                                 "instances");
  }
  if (static_cast<int64_t>(rows.size()) > max_rows) {
    return core::InvalidArgument(
        fmt::format("field \"instances\": {} rows, at most {} per request", rows.size(), max_rows),
        "instances");
  }
  Batch batch;
  batch.rows = static_cast<int64_t>(rows.size());
  batch.cols = schema.num_features;
  batch.values.reserve(static_cast<size_t>(batch.rows * batch.cols));
  for (size_t i = 0; i < rows.size(); ++i) {
    const Json& row = rows[i];
    std::string field = fmt::format("instances[{}]", i);
    if (row.is_array()) {
      if (static_cast<int64_t>(row.size()) != schema.num_features) {
        return core::InvalidArgument(
            fmt::format("field \"{}\": has {} values, the model takes {} features", field,
                        row.size(), schema.num_features),
            field);
      }
      for (size_t c = 0; c < row.size(); ++c) {
        const Json& v = row[c];
        if (v.is_number())
          batch.values.push_back(v.get<float>());
        else if (v.is_null())
          batch.values.push_back(std::numeric_limits<float>::quiet_NaN());
        else
          return core::InvalidArgument(
              fmt::format("field \"{}[{}]\": must be a number or null, got {}", field, c,
                          core::JsonTypeName(v)),
              fmt::format("{}[{}]", field, c));
      }
    } else if (row.is_object()) {
      if (schema.names.empty()) {
        return core::InvalidArgument(
            fmt::format("field \"{}\": the model's features have no names; send the row as an "
                        "array of {} numbers",
                        field, schema.num_features),
            field);
      }
      size_t found = 0;
      for (const std::string& name : schema.names) {
        auto it = row.find(name);
        if (it == row.end()) {
          return core::InvalidArgument(
              fmt::format("field \"{}.{}\": is missing (the model needs every feature; null "
                          "marks a missing value)",
                          field, name),
              field + "." + name);
        }
        ++found;
        if (it->is_number())
          batch.values.push_back(it->get<float>());
        else if (it->is_null())
          batch.values.push_back(std::numeric_limits<float>::quiet_NaN());
        else
          return core::InvalidArgument(
              fmt::format("field \"{}.{}\": must be a number or null, got {}", field, name,
                          core::JsonTypeName(*it)),
              field + "." + name);
      }
      if (found != row.size()) {
        for (const auto& [key, value] : row.items()) {
          if (std::find(schema.names.begin(), schema.names.end(), key) == schema.names.end()) {
            return core::InvalidArgument(
                fmt::format("field \"{}.{}\": the model has no feature \"{}\"", field, key, key),
                field + "." + key);
          }
        }
      }
    } else {
      return core::InvalidArgument(
          fmt::format("field \"{}\": must be an array or an object, got {}", field,
                      core::JsonTypeName(row)),
          field);
    }
  }
  return batch;
}

Result<Batch> ParseOipRequest(const Json& body, const InputSchema& schema, int64_t max_rows) {
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
  ASSIGN_OR_RETURN(auto id, r.OptionalString("id"));
  (void)id;
  ASSIGN_OR_RETURN(Json params, r.OptionalObject("parameters"));
  (void)params;
  ASSIGN_OR_RETURN(Json outputs, r.OptionalArray("outputs"));
  (void)outputs;
  ASSIGN_OR_RETURN(Json inputs, r.OptionalArray("inputs"));
  RETURN_IF_ERROR(r.Finish());
  if (inputs.empty())
    return core::InvalidArgument("field \"inputs\": must be a non-empty array", "inputs");
  std::vector<Tensor> tensors;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSIGN_OR_RETURN(Tensor t, ParseTensor(inputs[i], fmt::format("inputs[{}].", i)));
    tensors.push_back(std::move(t));
  }
  Batch batch;
  batch.cols = schema.num_features;
  if (tensors.size() == 1) {
    // One [N, F] tensor, or [F] for one row ([N] when the model takes one feature).
    Tensor& t = tensors[0];
    int64_t last = t.shape.back();
    if (t.shape.size() == 1 && schema.num_features == 1) {
      batch.rows = last;
    } else if (last != schema.num_features) {
      return core::InvalidArgument(
          fmt::format("field \"inputs[0].shape\": the last dimension is {}, the model takes {} "
                      "features",
                      last, schema.num_features),
          "inputs[0].shape");
    } else {
      batch.rows = t.shape.size() == 2 ? t.shape[0] : 1;
    }
    batch.values = std::move(t.data);
  } else {
    // One tensor per named feature.
    if (schema.names.empty()) {
      return core::InvalidArgument(
          "field \"inputs\": the model's features have no names; send one [N, F] tensor", "inputs");
    }
    if (static_cast<int64_t>(tensors.size()) != schema.num_features) {
      return core::InvalidArgument(
          fmt::format("field \"inputs\": {} tensors, the model takes {} features (one [N, F] "
                      "tensor, or one tensor per feature)",
                      tensors.size(), schema.num_features),
          "inputs");
    }
    std::vector<const Tensor*> by_feature(schema.names.size(), nullptr);
    for (size_t i = 0; i < tensors.size(); ++i) {
      auto it = std::find(schema.names.begin(), schema.names.end(), tensors[i].name);
      if (it == schema.names.end()) {
        return core::InvalidArgument(
            fmt::format("field \"inputs[{}].name\": the model has no feature \"{}\"", i,
                        tensors[i].name),
            fmt::format("inputs[{}].name", i));
      }
      const Tensor& t = tensors[i];
      if (t.shape.size() == 2 && t.shape[1] != 1) {
        return core::InvalidArgument(
            fmt::format("field \"inputs[{}].shape\": a feature tensor is [N] or [N, 1]", i),
            fmt::format("inputs[{}].shape", i));
      }
      by_feature[static_cast<size_t>(it - schema.names.begin())] = &t;
    }
    batch.rows = by_feature[0]->shape[0];
    for (size_t f = 0; f < by_feature.size(); ++f) {
      if (by_feature[f]->shape[0] != batch.rows) {
        return core::InvalidArgument(
            fmt::format("field \"inputs\": feature \"{}\" has {} rows, \"{}\" has {}",
                        schema.names[f], by_feature[f]->shape[0], schema.names[0], batch.rows),
            "inputs");
      }
    }
    batch.values.resize(static_cast<size_t>(batch.rows * batch.cols));
    for (int64_t row = 0; row < batch.rows; ++row) {
      for (size_t f = 0; f < by_feature.size(); ++f)
        batch.values[static_cast<size_t>(row * batch.cols) + f] =
            by_feature[f]->data[static_cast<size_t>(row)];
    }
  }
  if (batch.rows <= 0)
    return core::InvalidArgument("field \"inputs\": has no rows", "inputs");
  if (batch.rows > max_rows) {
    return core::InvalidArgument(
        fmt::format("field \"inputs\": {} rows, at most {} per request", batch.rows, max_rows),
        "inputs");
  }
  return batch;
}

Json OipResponse(const std::string& model_name, const std::string& model_version,
                 const std::string& id, const Prediction& prediction) {
  Json shape = prediction.per_row == 1 ? Json::array({prediction.rows})
                                       : Json::array({prediction.rows, prediction.per_row});
  Json out{{"model_name", model_name},
           {"model_version", model_version},
           {"outputs", Json::array({Json{{"name", "predict"},
                                         {"shape", shape},
                                         {"datatype", "FP32"},
                                         {"data", prediction.values}}})}};
  if (!id.empty())
    out["id"] = id;
  return out;
}

}  // namespace kervan::serving

// A realistic tracking workflow against a running Kervan, driven by the
// published npm MLflow client (`mlflow` 2.0.7, "MLflow api client for
// Node.js"): experiment, runs, params, metrics, tags, log-batch, finishing a
// run, searching with a filter and order_by, metric history, artifacts, and
// registering a model from a run.
//
// Run by scripts/test_mlflow_client.sh, which starts the server and sets
//   MLFLOW_TRACKING_URI    http://127.0.0.1:PORT
//   MLFLOW_TRACKING_TOKEN  a Kervan API token (sent as "Authorization: Bearer"
//                          through the client's `headers` option)
//
// What the package offers and what it lacks (checked against its lib/):
//  - Experiments, Runs, Metrics, Artifacts; no model registry, so registered
//    models and model versions go through the package's own request class
//    (MLflowBase.req: same URL scheme, JSON framing, headers and errors);
//  - Experiments.list() calls experiments/list, which MLflow 2.0 removed
//    (Kervan, like MLflow 2.x, answers 404), and setExperimentTag() builds
//    ".../experimentsset-experiment-tag" (missing "/"), so neither is used;
//  - Runs.create() and Runs.update() send no run_name: the name goes in the
//    mlflow.runName tag, as MLflow 1.x clients did;
//  - every POST body is printed with console.log (silenced below).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');

const MLflow = require('mlflow');
const { MLflowBase } = require('mlflow/lib/mlflow');
const { RunStatus, ViewType } = require('mlflow/enum');

const endpoint = process.env.MLFLOW_TRACKING_URI;
const token = process.env.MLFLOW_TRACKING_TOKEN;
if (!endpoint || !token) {
  throw new Error('MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN must be set');
}
const headers = { Authorization: `Bearer ${token}` };
const client = new MLflow({ endpoint, headers });
const { Experiments, Runs, Metrics, Artifacts } = client;

// The package logs every POST body; keep the test output readable.
console.log = () => {};

// An endpoint group the package has no class for (the model registry).
class Group extends MLflowBase {
  constructor(path) {
    super({ endpoint, headers });
    this.path = path;
  }
}
const RegisteredModels = new Group('/registered-models');
const ModelVersions = new Group('/model-versions');

// The package rejects with Error("Error: {status, statusText, data}").
function failure(err) {
  const text = String(err.message).replace(/^Error: /, '');
  return JSON.parse(text);
}
async function rejects(promise, status, errorCode) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a ${status} ${errorCode} failure, got success`);
  const f = failure(err);
  assert.equal(f.status, status, JSON.stringify(f));
  assert.equal(f.data.error_code, errorCode, JSON.stringify(f));
  assert.equal(typeof f.data.message, 'string');
}

const tagMap = (list = []) => Object.fromEntries(list.map(({ key, value }) => [key, value]));

test('a training workflow through the npm mlflow client', async (t) => {
  const suffix = `${Date.now()}-${process.pid}`;
  const name = `js-client-${suffix}`;
  let experimentId;
  const runs = {}; // run name -> run_id

  await t.test('creates, reads and renames an experiment', async () => {
    const created = await Experiments.create({ name });
    assert.equal(typeof created.experiment_id, 'string');
    experimentId = created.experiment_id;
    const { experiment } = await Experiments.get({ experiment_id: experimentId });
    assert.equal(experiment.name, name);
    assert.equal(experiment.lifecycle_stage, 'active');
    assert.equal(experiment.artifact_location, `mlflow-artifacts:/${experimentId}`);
    assert.equal(typeof experiment.creation_time, 'number');
    await rejects(Experiments.create({ name }), 400, 'RESOURCE_ALREADY_EXISTS');
    await Experiments.update({ experiment_id: experimentId, new_name: `${name}-renamed` });
    const renamed = await Experiments.get({ experiment_id: experimentId });
    assert.equal(renamed.experiment.name, `${name}-renamed`);
    await rejects(Experiments.get({ experiment_id: '987654321' }), 404, 'RESOURCE_DOES_NOT_EXIST');
  });

  await t.test('creates runs named through the mlflow.runName tag', async () => {
    for (const runName of ['baseline', 'candidate', 'discarded']) {
      const { run } = await Runs.create({
        experiment_id: experimentId,
        user_id: 'js-client',
        start_time: Date.now(),
        tags: [
          { key: 'mlflow.runName', value: runName },
          { key: 'mlflow.source.type', value: 'LOCAL' },
        ],
      });
      assert.match(run.info.run_id, /^[0-9a-f]{32}$/);
      assert.equal(run.info.run_name, runName);
      assert.equal(run.info.status, RunStatus.RUNNING);
      assert.equal(run.info.user_id, 'js-client');
      assert.equal(run.info.experiment_id, experimentId);
      assert.equal(
        run.info.artifact_uri,
        `mlflow-artifacts:/${experimentId}/${run.info.run_id}/artifacts`,
      );
      assert.equal(run.info.end_time, undefined);
      runs[runName] = run.info.run_id;
    }
  });

  await t.test('logs params, metrics and tags one by one', async () => {
    const run_id = runs.baseline;
    await Runs.logParameter({ run_id, key: 'model', value: 'logreg' });
    await Runs.logParameter({ run_id, key: 'C', value: '1.0' });
    // Logging the same value again is fine; changing it is refused.
    await Runs.logParameter({ run_id, key: 'C', value: '1.0' });
    await rejects(Runs.logParameter({ run_id, key: 'C', value: '2.0' }), 400,
      'INVALID_PARAMETER_VALUE');
    const t0 = Date.now();
    for (let step = 0; step < 5; step++) {
      await Runs.logMetric({ run_id, key: 'loss', value: 1 / (step + 1), timestamp: t0 + step, step });
    }
    await Runs.logMetric({ run_id, key: 'auc', value: 0.81, timestamp: t0, step: 0 });
    await Runs.setTag({ run_id, key: 'team', value: 'risk' });
    await Runs.setTag({ run_id, key: 'scratch', value: 'x' });
    await Runs.deleteTag({ run_id, key: 'scratch' });
    await rejects(Runs.logMetric({ run_id, key: 'auc', value: 'high', timestamp: t0, step: 1 }),
      400, 'INVALID_PARAMETER_VALUE');

    const { run } = await Runs.get({ run_id });
    assert.deepEqual(tagMap(run.data.params), { model: 'logreg', C: '1.0' });
    const tags = tagMap(run.data.tags);
    assert.equal(tags.team, 'risk');
    assert.equal(tags.scratch, undefined);
    assert.equal(tags['mlflow.runName'], 'baseline');
    const latest = tagMap(run.data.metrics);
    assert.equal(latest.loss, 0.2);
    assert.equal(latest.auc, 0.81);
  });

  await t.test('logs a batch', async () => {
    const run_id = runs.candidate;
    const t0 = Date.now();
    await Runs.logBatch({
      run_id,
      metrics: [
        ...[0, 1, 2, 3].map((step) => ({ key: 'loss', value: 0.9 - step * 0.2, timestamp: t0 + step, step })),
        { key: 'auc', value: 0.88, timestamp: t0, step: 0 },
        { key: 'unstable', value: 'NaN', timestamp: t0, step: 0 },
      ],
      params: [
        { key: 'model', value: 'gbm' },
        { key: 'depth', value: '6' },
      ],
      tags: [{ key: 'team', value: 'risk' }],
    });
    await Runs.logBatch({
      run_id: runs.discarded,
      metrics: [{ key: 'auc', value: 0.6, timestamp: t0, step: 0 }],
      params: [{ key: 'model', value: 'gbm' }],
    });
    // Over MLflow's limit of 100 params: refused whole.
    const params = Array.from({ length: 101 }, (_, i) => ({ key: `p${i}`, value: 'v' }));
    await rejects(
      Runs.logBatch({ run_id, metrics: [{ key: 'never', value: 1, timestamp: t0, step: 0 }], params }),
      400, 'INVALID_PARAMETER_VALUE',
    );
    const { run } = await Runs.get({ run_id });
    assert.deepEqual(tagMap(run.data.params), { model: 'gbm', depth: '6' });
    const latest = tagMap(run.data.metrics);
    assert.equal(latest.auc, 0.88);
    assert.equal(latest.unstable, 'NaN');
    assert.equal(latest.never, undefined, 'the refused batch wrote nothing');
  });

  await t.test('finishes runs', async () => {
    for (const run_id of [runs.baseline, runs.candidate]) {
      const end_time = Date.now();
      const { run_info } = await Runs.update({ run_id, status: RunStatus.FINISHED, end_time });
      assert.equal(run_info.status, 'FINISHED');
      assert.equal(run_info.end_time, end_time);
    }
    await Runs.update({ run_id: runs.discarded, status: RunStatus.KILLED, end_time: Date.now() });
    await Runs.delete({ run_id: runs.discarded });
    const { run } = await Runs.get({ run_id: runs.discarded });
    assert.equal(run.info.lifecycle_stage, 'deleted');
    assert.equal(run.info.status, 'KILLED');
  });

  await t.test('searches runs with a filter and order_by', async () => {
    const ranked = await Runs.search({
      experiment_ids: [experimentId],
      filter: "attributes.status = 'FINISHED' and metrics.auc > 0.5",
      order_by: ['metrics.auc DESC'],
    });
    assert.deepEqual(ranked.runs.map((r) => r.info.run_name), ['candidate', 'baseline']);
    assert.equal(ranked.next_page_token, undefined);

    const gbm = await Runs.search({
      experiment_ids: [experimentId],
      filter: "params.model = 'gbm' and tags.team = 'risk'",
    });
    assert.deepEqual(gbm.runs.map((r) => r.info.run_id), [runs.candidate]);

    const deleted = await Runs.search({
      experiment_ids: [experimentId],
      run_view_type: ViewType.DELETED_ONLY,
    });
    assert.deepEqual(deleted.runs.map((r) => r.info.run_name), ['discarded']);

    // One at a time: a token while pages are full, then an empty answer.
    const seen = [];
    let page_token;
    for (let i = 0; i < 5; i++) {
      const page = await Runs.search({
        experiment_ids: [experimentId],
        order_by: ['attributes.run_name ASC'],
        max_results: 1,
        page_token,
      });
      for (const r of page.runs || []) seen.push(r.info.run_name);
      page_token = page.next_page_token;
      if (!page_token) break;
    }
    assert.deepEqual(seen, ['baseline', 'candidate']);
    assert.equal(page_token, undefined);

    const nothing = await Runs.search({ experiment_ids: [experimentId], filter: 'metrics.auc > 2' });
    assert.deepEqual(nothing, {});
    await rejects(Runs.search({ experiment_ids: [experimentId], filter: 'metrics.auc >' }), 400,
      'INVALID_PARAMETER_VALUE');
  });

  await t.test('reads metric history', async () => {
    const { metrics } = await Metrics.getHistory({ run_id: runs.baseline, metric_key: 'loss' });
    assert.deepEqual(metrics.map((m) => m.step), [0, 1, 2, 3, 4]);
    assert.deepEqual(metrics.map((m) => m.value), [1, 0.5, 1 / 3, 0.25, 0.2]);
    for (const m of metrics) {
      assert.equal(m.key, 'loss');
      assert.equal(typeof m.timestamp, 'number');
    }
    const nan = await Metrics.getHistory({ run_id: runs.candidate, metric_key: 'unstable' });
    assert.deepEqual(nan.metrics.map((m) => m.value), ['NaN']);
    await rejects(Metrics.getHistory({ run_id: '0123456789abcdef0123456789abcdef', metric_key: 'loss' }),
      404, 'RESOURCE_DOES_NOT_EXIST');
  });

  await t.test('lists (no) artifacts', async () => {
    const listing = await Artifacts.list({ run_id: runs.candidate });
    assert.deepEqual(listing, {
      root_uri: `mlflow-artifacts:/${experimentId}/${runs.candidate}/artifacts`,
    });
  });

  await t.test('registers a model from the best run', async () => {
    const modelName = `js-credit-${suffix}`;
    const created = await RegisteredModels.req('post', '/create', { name: modelName });
    assert.equal(created.registered_model.name, modelName);
    const source = `runs:/${runs.candidate}/model`;
    const { model_version } = await ModelVersions.req('post', '/create', {
      name: modelName,
      source,
      run_id: runs.candidate,
    });
    assert.equal(model_version.name, modelName);
    assert.equal(model_version.version, '1');
    assert.equal(model_version.run_id, runs.candidate);
    const fetched = await ModelVersions.req('get', '/get', { name: modelName, version: '1' });
    assert.equal(fetched.model_version.version, '1');
    assert.equal(fetched.model_version.run_id, runs.candidate);
    const { registered_model } = await RegisteredModels.req('get', '/get', { name: modelName });
    assert.equal(registered_model.name, modelName);
  });

  await t.test('deletes and restores the experiment', async () => {
    await Experiments.delete({ experiment_id: experimentId });
    assert.equal((await Experiments.get({ experiment_id: experimentId })).experiment.lifecycle_stage,
      'deleted');
    const { run } = await Runs.get({ run_id: runs.baseline });
    assert.equal(run.info.lifecycle_stage, 'deleted');
    await Experiments.restore({ experiment_id: experimentId });
    assert.equal((await Experiments.get({ experiment_id: experimentId })).experiment.lifecycle_stage,
      'active');
  });
});

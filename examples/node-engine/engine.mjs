// An external engine for engineshed in Node.js: the established library-training flow, nothing from Python.
//
//   ENGINESHED_URL=http://127.0.0.1:8000 ENGINE_TOKEN=... ENGINE_ID=my-node-engine node engine.mjs
//
// For each claimed task it sets the model running, pages the library (30 a page, as the established docs advise),
// downloads the identifier files four at a time (p-limit), heartbeats with progress (stopping when the job is
// cancelled), uploads its model file with the documented multipart request (fetch and FormData: undici, built into
// Node 18+) and completes the task -- or sets the model failed with the error in jsondata. ONCE=1: exit after a task.
// Its "training" fingerprints each file (SHA-256) and keeps the mapping from fingerprints back to entity and
// identifier IDs: replace train() with your engine.
import { createHash } from "node:crypto";
import { GraphQLClient, gql } from "graphql-request";
import pLimit from "p-limit";

const base = (process.env.ENGINESHED_URL || "http://127.0.0.1:8000").replace(/\/(v3\/graphql)?\/?$/, "");
const endpoint = `${base}/v3/graphql`;
const engineId = process.env.ENGINE_ID;
const engineToken = process.env.ENGINE_TOKEN;
const once = process.env.ONCE === "1";
const PAGE = 30;
if (!engineId || !engineToken) {
  console.error("set ENGINE_ID and ENGINE_TOKEN (engineshed token create --org ORG --scope engine --engine ID)");
  process.exit(2);
}

const client = (token) => new GraphQLClient(endpoint, { headers: { authorization: `Bearer ${token}` } });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let stopping = false;
let current = null; // { api, taskId } while a task is held

// service_unavailable (or a 502/503/504) means "not now": try again with backoff.
async function call(api, document, variables, attempt = 0) {
  try {
    return await api.request(document, variables);
  } catch (error) {
    const codes = (error.response?.errors || []).map((e) => e.extensions?.code);
    const status = error.response?.status;
    if ((codes.includes("service_unavailable") || [502, 503, 504].includes(status)) && attempt < 5) {
      await sleep(250 * 2 ** attempt);
      return call(api, document, variables, attempt + 1);
    }
    throw error;
  }
}

const CLAIM = gql`mutation($e: ID!) { claimTasks(engineId: $e, limit: 1) { token task { id payload } } }`;
const MODEL = gql`mutation($input: UpdateLibraryEngineModel!) { updateLibraryEngineModel(input: $input) { id trainStatus dataUrl } }`;
const ENTITIES = gql`query($id: ID!, $offset: Int, $limit: Int) { library(id: $id) { id name
  entities(offset: $offset, limit: $limit) { count records { id name identifiers(limit: $limit) { count records { id url } } } } } }`;
const IDENTIFIERS = gql`query($id: ID!, $offset: Int, $limit: Int) { entity(id: $id) {
  identifiers(offset: $offset, limit: $limit) { count records { id url } } } }`;
const HEARTBEAT = gql`mutation($id: ID!, $p: Float, $m: String) { heartbeatTask(id: $id, progress: $p, message: $m) { cancelRequested } }`;
const COMPLETE = gql`mutation($id: ID!, $o: JSONData) { completeTask(id: $id, output: $o) { status } }`;
const FAIL = gql`mutation($id: ID!, $m: String, $retry: Boolean) { failTask(id: $id, failureReason: "other", failureMessage: $m, retry: $retry) { status } }`;

class Cancelled extends Error {}

// Page the library's entities, then any entity's further identifiers, until a short page.
async function readLibrary(api, libraryId) {
  const entities = [];
  for (let offset = 0; ; offset += PAGE) {
    const { library } = await call(api, ENTITIES, { id: libraryId, offset, limit: PAGE });
    for (const entity of library.entities.records) {
      const identifiers = [...entity.identifiers.records];
      for (let more = PAGE; identifiers.length === more; more += PAGE) {
        const page = await call(api, IDENTIFIERS, { id: entity.id, offset: more, limit: PAGE });
        identifiers.push(...page.entity.identifiers.records);
      }
      entities.push({ id: entity.id, name: entity.name, identifiers });
    }
    if (library.entities.count < PAGE) return entities;
  }
}

async function train(api, taskId, entities) {
  const limit = pLimit(4);
  const files = entities.flatMap((e) => e.identifiers.map((i) => ({ entityId: e.id, identifierId: i.id, url: i.url })));
  let done = 0;
  const fingerprints = await Promise.all(files.map((file) => limit(async () => {
    const response = await fetch(file.url);
    if (!response.ok) throw new Error(`identifier ${file.identifierId}: HTTP ${response.status}`);
    const digest = createHash("sha256").update(Buffer.from(await response.arrayBuffer())).digest("hex");
    done += 1;
    return { ...file, url: undefined, sha256: digest };
  })));
  return { fingerprints, files: done };
}

async function heartbeat(api, taskId, progress, message) {
  const { heartbeatTask } = await call(api, HEARTBEAT, { id: taskId, p: progress, m: message });
  if (heartbeatTask.cancelRequested) throw new Cancelled("stopped on request: the job was cancelled");
}

// The documented multipart request: a query part, a variables part and ONE part named file with its type.
async function uploadModel(token, modelId, body, jsondata) {
  const form = new FormData();
  form.append("query", "mutation($input: UpdateLibraryEngineModel!) { updateLibraryEngineModel(input: $input) { id trainStatus dataUrl contentType } }");
  form.append("variables", JSON.stringify({ input: { id: modelId, trainStatus: "complete", jsondata } }));
  form.append("file", new Blob([body], { type: "application/json" }), "fingerprints.json");
  const response = await fetch(endpoint, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: form });
  const reply = await response.json();
  if (reply.errors) throw new Error(reply.errors[0].message);
  return reply.data.updateLibraryEngineModel;
}

async function runTask({ token, task }) {
  const api = client(token);
  const { libraryId, libraryEngineModelId: modelId } = task.payload;
  current = { api, taskId: task.id };
  console.log(`claimed task ${task.id}: model ${modelId}`);
  const beat = setInterval(() => heartbeat(api, task.id).catch((e) => { if (e instanceof Cancelled) stopping = "cancel"; }), 2000);
  try {
    await call(api, MODEL, { input: { id: modelId, trainStatus: "running" } });
    const entities = await readLibrary(api, libraryId);
    await heartbeat(api, task.id, 0.1, `read ${entities.length} entities`);
    const model = await train(api, task.id, entities);
    if (stopping === "cancel") throw new Cancelled("stopped on request: the job was cancelled");
    const saved = await uploadModel(token, modelId, JSON.stringify(model), { fingerprints: model.files, entities: entities.length });
    await call(api, COMPLETE, { id: task.id, o: { libraryEngineModelId: modelId } });
    console.log(`task ${task.id}: model ${saved.id} ${saved.trainStatus} (${saved.contentType})`);
    return "complete";
  } catch (error) {
    const message = error.response?.errors?.[0]?.message || error.message;
    if (!(error instanceof Cancelled)) {
      await call(api, MODEL, { input: { id: modelId, trainStatus: "failed", jsondata: { error: message } } }).catch(() => {});
    }
    await call(api, FAIL, { id: task.id, m: message, retry: false }).catch(() => {});
    console.error(`task ${task.id}: ${message}`);
    return "failed";
  } finally {
    clearInterval(beat);
    current = null;
  }
}

// Ctrl-C: hand a held task back to the queue before leaving.
process.on("SIGINT", async () => {
  if (current) await call(current.api, FAIL, { id: current.taskId, m: "the engine stopped", retry: true }).catch(() => {});
  process.exit(130);
});

const engine = client(engineToken);
for (;;) {
  const { claimTasks } = await call(engine, CLAIM, { e: engineId });
  if (claimTasks.length === 0) {
    await sleep(1000);
    continue;
  }
  const status = await runTask(claimTasks[0]);
  if (once) process.exit(status === "complete" ? 0 : 1);
}

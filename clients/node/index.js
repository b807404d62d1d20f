'use strict';
/**
 * SwitchboardClient: the switchboard.v1 ChatService over @grpc/grpc-js, with the contract's
 * .proto files loaded at runtime by @grpc/proto-loader (no generated code).
 *
 * Messages are plain objects with the .proto field names (snake_case, keepCase), enums as
 * their names, int64 as numbers, and oneofs named by a virtual field (`frame: "text"`,
 * `part: "text"`). Failed calls reject with a SwitchboardError decoded from the
 * `grpc-status-details-bin` trailer (google.rpc.Status with ErrorInfo, RetryInfo, ...).
 */

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const DEFAULT_PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
const PACKAGE = 'switchboard.v1';
const DETAILS_KEY = 'grpc-status-details-bin';
const REQUEST_ID_KEY = 'x-request-id';
const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

// google.rpc.Status and the error details the gateway sends (googleapis google/rpc/*.proto,
// only the fields used here; field numbers as upstream). Decoded with the same protobufjs
// runtime that proto-loader uses, so nothing extra is generated or vendored.
const RPC_PROTO = `
syntax = "proto3";
package google.rpc;
message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
message RetryInfo { google.protobuf.Duration retry_delay = 1; }
message QuotaFailure {
  message Violation { string subject = 1; string description = 2; }
  repeated Violation violations = 1;
}
message BadRequest {
  message FieldViolation { string field = 1; string description = 2; }
  repeated FieldViolation field_violations = 1;
}
`;
const rpcRoot = new protobuf.Root();
rpcRoot.addJSON(protobuf.common['google/protobuf/any.proto'].nested);
rpcRoot.addJSON(protobuf.common['google/protobuf/duration.proto'].nested);
protobuf.parse(RPC_PROTO, rpcRoot, { keepCase: true });
rpcRoot.resolveAll();
const RPC_TYPES = {
  Status: rpcRoot.lookupType('google.rpc.Status'),
  ErrorInfo: rpcRoot.lookupType('google.rpc.ErrorInfo'),
  RetryInfo: rpcRoot.lookupType('google.rpc.RetryInfo'),
  QuotaFailure: rpcRoot.lookupType('google.rpc.QuotaFailure'),
  BadRequest: rpcRoot.lookupType('google.rpc.BadRequest'),
};
const RPC_TO_OBJECT = { longs: Number, defaults: true };

const CODE_NAMES = Object.fromEntries(
  Object.entries(grpc.status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v, k]),
);

/** A failed call: gRPC code, ErrorInfo reason, RetryInfo delay (mirrors switchboard_client). */
class SwitchboardError extends Error {
  constructor({
    code,
    message,
    reason = '',
    domain = '',
    metadata = {},
    retryAfter = null,
    fieldViolations = [],
    quotaViolations = [],
    requestId = null,
  }) {
    super(message);
    this.name = 'SwitchboardError';
    this.code = code;
    this.codeName = CODE_NAMES[code] || String(code);
    this.reason = reason;
    this.domain = domain;
    this.metadata = metadata;
    // Seconds to wait before retrying, when the gateway knows (RetryInfo); otherwise null.
    this.retryAfter = retryAfter;
    this.fieldViolations = fieldViolations;
    this.quotaViolations = quotaViolations;
    this.requestId = requestId;
  }

  toString() {
    return `${this.name}: ${this.codeName}${this.reason ? ' ' + this.reason : ''}: ${this.message}`;
  }

  toJSON() {
    const { code, codeName, reason, domain, metadata, retryAfter, message } = this;
    const { fieldViolations, quotaViolations, requestId } = this;
    return {
      code,
      codeName,
      reason,
      domain,
      metadata,
      retryAfter,
      message,
      fieldViolations,
      quotaViolations,
      requestId,
    };
  }

  /** Decodes a grpc-js ServiceError (code, details, trailing metadata). */
  static fromServiceError(err) {
    if (err instanceof SwitchboardError) return err;
    const metadata = err && err.metadata instanceof grpc.Metadata ? err.metadata : null;
    const requestId = metadata ? firstText(metadata, REQUEST_ID_KEY) : null;
    const out = new SwitchboardError({
      code: typeof err?.code === 'number' ? err.code : grpc.status.UNKNOWN,
      message: err?.details || err?.message || 'unknown error',
      requestId,
    });
    const raw = metadata ? metadata.get(DETAILS_KEY)[0] : undefined;
    if (Buffer.isBuffer(raw)) applyDetails(out, raw);
    return out;
  }
}

function applyDetails(out, raw) {
  let status;
  try {
    status = RPC_TYPES.Status.decode(raw);
  } catch {
    return; // A malformed trailer leaves the plain gRPC code and message.
  }
  if (status.message) out.message = status.message;
  for (const any of status.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    const type = RPC_TYPES[typeName.startsWith('google.rpc.') ? typeName.slice(11) : ''];
    if (!type || type === RPC_TYPES.Status) continue;
    const detail = type.toObject(type.decode(any.value), RPC_TO_OBJECT);
    if (type === RPC_TYPES.ErrorInfo) {
      out.reason = detail.reason;
      out.domain = detail.domain;
      out.metadata = { ...detail.metadata };
    } else if (type === RPC_TYPES.RetryInfo && detail.retry_delay) {
      out.retryAfter = detail.retry_delay.seconds + detail.retry_delay.nanos / 1e9;
    } else if (type === RPC_TYPES.QuotaFailure) {
      out.quotaViolations = detail.violations.map(({ subject, description }) => ({
        subject,
        description,
      }));
    } else if (type === RPC_TYPES.BadRequest) {
      out.fieldViolations = detail.field_violations.map(({ field, description }) => ({
        field,
        description,
      }));
    }
  }
}

function firstText(metadata, key) {
  const value = metadata.get(key)[0];
  if (value === undefined) return null;
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}

// --- contract loading and request checks -----------------------------------------------------

const loaded = new Map();

function loadContract(protoDir) {
  let contract = loaded.get(protoDir);
  if (!contract) {
    const definition = protoLoader.loadSync(['switchboard/v1/chat.proto'], {
      ...LOADER_OPTIONS,
      includeDirs: [protoDir],
    });
    const pkg = grpc.loadPackageDefinition(definition);
    contract = { definition, ChatService: pkg.switchboard.v1.ChatService };
    loaded.set(protoDir, contract);
  }
  return contract;
}

// protobufjs drops unknown object keys silently, so a camelCase `maxTokens` would vanish from
// the request; the request is walked against the descriptors and such keys are refused.
const fieldTables = new WeakMap();

function checkFields(definition, typeName, descriptor, value, where) {
  if (value === null || value === undefined || typeof value !== 'object') return;
  let table = fieldTables.get(descriptor);
  if (!table) {
    table = {
      fields: new Map(descriptor.field.map((f) => [f.name, f])),
      oneofs: new Set(descriptor.oneofDecl.map((o) => o.name)),
    };
    fieldTables.set(descriptor, table);
  }
  const { fields, oneofs } = table;
  for (const [key, sub] of Object.entries(value)) {
    const field = fields.get(key);
    if (!field) {
      if (oneofs.has(key)) continue; // the virtual oneof name of a response object sent back
      throw new TypeError(`${where}: unknown field '${key}' for ${typeName}`);
    }
    if (field.type !== 'TYPE_MESSAGE' || sub === null || typeof sub !== 'object') continue;
    const mapEntry = descriptor.nestedType.find(
      (n) => n.name === field.typeName && n.options && n.options.mapEntry,
    );
    if (mapEntry) {
      const valueField = mapEntry.field.find((f) => f.name === 'value');
      if (valueField.type !== 'TYPE_MESSAGE') continue;
      const [name, child] = resolveType(definition, typeName, valueField.typeName);
      for (const [k, item] of Object.entries(sub)) {
        if (child) checkFields(definition, name, child, item, `${where}.${key}[${k}]`);
      }
      continue;
    }
    const [name, child] = resolveType(definition, typeName, field.typeName);
    if (!child) continue;
    if (Array.isArray(sub)) {
      sub.forEach((item, i) => checkFields(definition, name, child, item, `${where}.${key}[${i}]`));
    } else {
      checkFields(definition, name, child, sub, `${where}.${key}`);
    }
  }
}

// Protobuf name resolution: `name` is looked up from the enclosing scopes of `fromType` outwards.
function resolveType(definition, fromType, name) {
  const scope = fromType.split('.');
  while (scope.length > 0) {
    scope.pop();
    const candidate = [...scope, name].join('.');
    const entry = definition[candidate];
    if (entry && entry.format === 'Protocol Buffer 3 DescriptorProto') return [candidate, entry.type];
  }
  return [name, null];
}

function normalizeRequest(definition, request) {
  if (request === null || typeof request !== 'object') {
    throw new TypeError('request must be a ChatRequest object');
  }
  const messages = (request.messages || []).map((m) => (typeof m === 'string' ? user(m) : m));
  const normalized = { ...request, messages };
  const chatRequest = `${PACKAGE}.ChatRequest`;
  checkFields(definition, chatRequest, definition[chatRequest].type, normalized, 'request');
  return normalized;
}

// --- helpers ------------------------------------------------------------------------------------

/** A text message; role is system, developer, user, assistant or tool. */
function message(role, text) {
  return { role: `ROLE_${String(role).toUpperCase()}`, content: [{ text }] };
}

/** A user message (the OpenAI {"role": "user", "content": text}). */
function user(text) {
  return message('user', text);
}

/** A system message. */
function system(text) {
  return message('system', text);
}

/** A tool message answering one tool call. */
function toolResult(toolCallId, content, { isError = false } = {}) {
  return {
    role: 'ROLE_TOOL',
    content: [{ tool_result: { tool_call_id: toolCallId, content, is_error: isError } }],
  };
}

/** A JSON-like JS value as google.protobuf.Value (for Struct fields). */
function toValue(value) {
  // The well-known types come from protobufjs's bundled JSON, whose field names are camelCase.
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  if (typeof value === 'object') return { structValue: struct(value) };
  throw new TypeError(`cannot put a ${typeof value} into a google.protobuf.Value`);
}

/** A plain JS object as google.protobuf.Struct (tool parameters, JSON schemas, passthrough). */
function struct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)])) };
}

/** The assistant text of a ChatResponse (its text parts joined). */
function responseText(response) {
  const content = response?.message?.content || [];
  return content.map((part) => (typeof part.text === 'string' ? part.text : '')).join('');
}

// --- the client ---------------------------------------------------------------------------------

/** Chat, streaming chat and model listing over one grpc-js channel (mirrors switchboard_client). */
class SwitchboardClient {
  #stub;
  #auth;
  #timeoutMs;
  #definition;

  /**
   * @param {string} target host:port of the gateway's gRPC listener
   * @param {string} apiKey a gateway key, sent as `authorization: Bearer <key>`
   * @param {object} [options] secure, credentials, timeoutMs, channelOptions, protoDir
   */
  constructor(target, apiKey, options = {}) {
    const { secure = false, credentials, timeoutMs, channelOptions = {} } = options;
    const protoDir = options.protoDir || process.env.SWITCHBOARD_PROTO_DIR || DEFAULT_PROTO_DIR;
    const { definition, ChatService } = loadContract(protoDir);
    const creds =
      credentials || (secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure());
    this.target = target;
    this.#definition = definition;
    this.#stub = new ChatService(target, creds, channelOptions);
    // Private: the key must not show up in util.inspect / console.log of the client.
    this.#auth = `Bearer ${apiKey}`;
    this.#timeoutMs = timeoutMs;
  }

  /** One completion; messages may be strings (user messages). */
  chat(request, options = {}) {
    return new Promise((resolve, reject) => {
      const call = this.#stub.Chat(
        normalizeRequest(this.#definition, request),
        this.#metadata(options),
        this.#callOptions(options),
        (err, response) => (err ? reject(SwitchboardError.fromServiceError(err)) : resolve(response)),
      );
      onAbort(options.signal, () => call.cancel());
    });
  }

  /** Frames of one completion: start, deltas, end. Leaving the loop early cancels the call. */
  async *streamChat(request, options = {}) {
    const call = this.#stub.StreamChat(
      { chat: normalizeRequest(this.#definition, request) },
      this.#metadata(options),
      this.#callOptions(options),
    );
    // After an early exit the cancel below ends the call with CANCELLED; nobody awaits that.
    call.on('error', () => {});
    onAbort(options.signal, () => call.cancel());
    try {
      for await (const frame of call) yield frame;
    } catch (err) {
      throw SwitchboardError.fromServiceError(err);
    } finally {
      call.cancel();
    }
  }

  /** Every model and route the gateway serves. */
  listModels(options = {}) {
    return new Promise((resolve, reject) => {
      const call = this.#stub.ListModels(
        {},
        this.#metadata(options),
        this.#callOptions(options),
        (err, response) =>
          err ? reject(SwitchboardError.fromServiceError(err)) : resolve(response.models),
      );
      onAbort(options.signal, () => call.cancel());
    });
  }

  /** Closes the channel. */
  close() {
    this.#stub.close();
  }

  #metadata(options) {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', this.#auth);
    if (options.requestId) metadata.set(REQUEST_ID_KEY, options.requestId);
    return metadata;
  }

  #callOptions(options) {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  }
}

function onAbort(signal, cancel) {
  if (!signal) return;
  if (signal.aborted) cancel();
  else signal.addEventListener('abort', cancel, { once: true });
}

module.exports = {
  SwitchboardClient,
  SwitchboardError,
  message,
  user,
  system,
  toolResult,
  struct,
  responseText,
  status: grpc.status,
};

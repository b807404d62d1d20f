/**
 * The generic layer: any service of the contract called over one @grpc/grpc-js channel, with
 * every method, its path and its message types taken from the generated service descriptor
 * (protoc-gen-es `GenService`). A method added to the contract is callable after `make gen`
 * with no code here; this file only knows the four RPC shapes.
 */

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { REQUEST_ID_KEY, SwitchboardError, firstText } from './errors.js';
import { checkInit } from './messages.js';

/** @import { DescMessage, DescMethod, DescService, MessageInitShape, MessageShape } from '@bufbuild/protobuf' */
/** @import { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2' */

/**
 * Per-call options (every method takes them as its last argument).
 * @typedef {object} CallOptions
 * @property {number} [timeoutMs] the call's deadline in milliseconds (default: the client's);
 *   past it the call fails with DEADLINE_EXCEEDED
 * @property {string} [requestId] sent as `x-request-id`; the gateway uses it (otherwise it
 *   assigns one) and returns it in the call's trailing metadata
 * @property {AbortSignal} [signal] cancels the call: it then fails with CANCELLED (the
 *   signal's reason as the error's `cause`) and the gateway stops the upstream request
 * @property {(requestId: string) => void} [onRequestId] called with the call's `x-request-id`
 *   when it ends, successful or not
 */

/**
 * How the client connects.
 * @typedef {object} ClientOptions
 * @property {boolean} [secure] TLS with the system roots (ignored when `credentials` is given)
 * @property {grpc.ChannelCredentials} [credentials] any grpc-js channel credentials
 * @property {number} [timeoutMs] default deadline of every call, in milliseconds
 * @property {grpc.ChannelOptions} [channelOptions] grpc-js channel options
 */

/**
 * A typed client for one generated service: one method per RPC, named by its `localName`
 * (`CreateKey` → `createKey`). Unary calls return a Promise of the response; server-streaming
 * calls an async generator of responses; bidirectional calls take an (async) iterable of
 * requests and return an async generator of responses. Requests are message init objects
 * (plain objects with the generated field names) or messages.
 * @template {GenServiceMethods} T
 * @typedef {{
 *   [K in keyof T]: T[K]['methodKind'] extends 'unary'
 *     ? (request: MessageInitShape<T[K]['input']>, options?: CallOptions) =>
 *         Promise<MessageShape<T[K]['output']>>
 *     : T[K]['methodKind'] extends 'server_streaming'
 *       ? (request: MessageInitShape<T[K]['input']>, options?: CallOptions) =>
 *           AsyncGenerator<MessageShape<T[K]['output']>, void, undefined>
 *       : T[K]['methodKind'] extends 'bidi_streaming'
 *         ? (
 *             requests: AsyncIterable<MessageInitShape<T[K]['input']>>
 *               | Iterable<MessageInitShape<T[K]['input']>>,
 *             options?: CallOptions,
 *           ) => AsyncGenerator<MessageShape<T[K]['output']>, void, undefined>
 *         : never
 * }} ServiceClient
 */

/**
 * The methods table of a generated service type (`MethodsOf<typeof AdminService>`).
 * @template S
 * @typedef {S extends GenService<infer T> ? T : never} MethodsOf
 */

/** One grpc-js channel, the gateway key, and the four ways to call a method on it. */
export class Transport {
  /** @type {grpc.Client} */
  #client;
  /** @type {string} */
  #auth;
  /** @type {number | undefined} */
  #timeoutMs;

  /**
   * @param {string} target host:port of the gateway's gRPC listener
   * @param {string} apiKey sent as `authorization: Bearer <key>`
   * @param {ClientOptions} [options]
   */
  constructor(target, apiKey, options = {}) {
    const { secure = false, credentials, timeoutMs, channelOptions = {} } = options;
    const creds =
      credentials ?? (secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure());
    this.#client = new grpc.Client(target, creds, channelOptions);
    // Private: the key must not show up in util.inspect / console.log of the client.
    this.#auth = `Bearer ${apiKey}`;
    this.#timeoutMs = timeoutMs;
  }

  /** Closes the channel. */
  close() {
    this.#client.close();
  }

  /**
   * A client for `service` on this channel.
   * @template {GenServiceMethods} T
   * @param {GenService<T>} service a generated service descriptor (`AdminService`)
   * @returns {ServiceClient<T>}
   */
  service(service) {
    /** @type {Record<string, Function>} */
    const methods = {};
    for (const method of /** @type {DescService} */ (service).methods) {
      methods[method.localName] = this.#caller(method);
    }
    return /** @type {ServiceClient<T>} */ (Object.freeze(methods));
  }

  /** @param {DescMethod} method */
  #caller(method) {
    switch (method.methodKind) {
      case 'unary':
        return (/** @type {unknown} */ request, /** @type {CallOptions} */ options) =>
          this.unary(method, request, options);
      case 'server_streaming':
        return (/** @type {unknown} */ request, /** @type {CallOptions} */ options) =>
          this.serverStream(method, request, options);
      case 'bidi_streaming':
        return (
          /** @type {AsyncIterable<unknown> | Iterable<unknown>} */ requests,
          /** @type {CallOptions} */ options,
        ) => this.bidiStream(method, requests, options);
      default:
        // The contract has no client-streaming RPC; one added later fails clearly, not oddly.
        return () => {
          throw new TypeError(
            `${method.parent.typeName}.${method.name}: ${method.methodKind} RPCs are not supported by this client`,
          );
        };
    }
  }

  /**
   * One request, one response.
   * @param {DescMethod} method
   * @param {unknown} request
   * @param {CallOptions} [options]
   * @returns {Promise<any>}
   */
  unary(method, request, options = {}) {
    const call = this.#prepare(method, options);
    const message = toMessage(method.input, request, 'request');
    return new Promise((resolve, reject) => {
      const handle = this.#client.makeUnaryRequest(
        ...call.route,
        message,
        call.metadata,
        call.options,
        (err, response) => (err ? reject(failure(err, options)) : resolve(response)),
      );
      watch(handle, options);
    });
  }

  /**
   * One request, a stream of responses; leaving the loop early cancels the call.
   * @param {DescMethod} method
   * @param {unknown} request
   * @param {CallOptions} [options]
   * @returns {AsyncGenerator<any, void, undefined>}
   */
  async *serverStream(method, request, options = {}) {
    const call = this.#prepare(method, options);
    const message = toMessage(method.input, request, 'request');
    const handle = this.#client.makeServerStreamRequest(
      ...call.route,
      message,
      call.metadata,
      call.options,
    );
    // Errors surface through the iterator below; after an early exit nobody awaits CANCELLED.
    handle.on('error', () => {});
    watch(handle, options);
    try {
      for await (const response of handle) yield response;
    } catch (err) {
      throw failure(err, options);
    } finally {
      handle.cancel();
    }
  }

  /**
   * A stream each way: `requests` is written as it yields (then the client half-closes), the
   * responses are yielded as they arrive; leaving the loop early cancels the call.
   * @param {DescMethod} method
   * @param {AsyncIterable<unknown> | Iterable<unknown>} requests
   * @param {CallOptions} [options]
   * @returns {AsyncGenerator<any, void, undefined>}
   */
  async *bidiStream(method, requests, options = {}) {
    const call = this.#prepare(method, options);
    const handle = this.#client.makeBidiStreamRequest(...call.route, call.metadata, call.options);
    handle.on('error', () => {});
    watch(handle, options);
    // Set when a request cannot be sent (e.g. an unknown field): the call is then cancelled.
    const refused = { failed: false, error: /** @type {unknown} */ (undefined) };
    const pump = async () => {
      let index = 0;
      for await (const request of requests) {
        if (handle.writableEnded || handle.destroyed) return;
        // grpc-js buffers writes; the messages of this contract are few and small.
        handle.write(toMessage(method.input, request, `requests[${index++}]`));
      }
      if (!handle.writableEnded && !handle.destroyed) handle.end();
    };
    pump().catch((error) => {
      Object.assign(refused, { failed: true, error });
      handle.cancel();
    });
    try {
      for await (const response of handle) yield response;
    } catch (err) {
      throw refused.failed ? refused.error : failure(err, options);
    } finally {
      handle.cancel();
    }
    if (refused.failed) throw refused.error;
  }

  /**
   * Route (path and codecs), metadata and deadline of one call.
   * @param {DescMethod} method
   * @param {CallOptions} options
   */
  #prepare(method, options) {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', this.#auth);
    if (options.requestId) metadata.set(REQUEST_ID_KEY, options.requestId);
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    /** @type {[string, (message: any) => Buffer, (bytes: Buffer) => any]} */
    const route = [
      `/${method.parent.typeName}/${method.name}`,
      (message) => Buffer.from(toBinary(method.input, message)),
      (bytes) => fromBinary(method.output, bytes),
    ];
    return {
      route,
      metadata,
      /** @type {grpc.CallOptions} */
      options: timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs },
    };
  }
}

/**
 * A message of `schema` from an init object (or a message), refusing keys the type lacks.
 * @param {DescMessage} schema
 * @param {unknown} init
 * @param {string} where
 */
function toMessage(schema, init, where) {
  if (init === null || typeof init !== 'object') {
    throw new TypeError(`${where}: expected a ${schema.typeName} object, got ${typeof init}`);
  }
  checkInit(schema, init, where);
  return create(schema, /** @type {any} */ (init));
}

/**
 * Wires `options.signal` to cancel the call and reports the request id when it ends.
 * @param {grpc.ClientUnaryCall | grpc.ClientReadableStream<any> | grpc.ClientDuplexStream<any, any>} call
 * @param {CallOptions} options
 */
function watch(call, { signal, onRequestId }) {
  const cancel = () => call.cancel();
  if (signal?.aborted) cancel();
  else signal?.addEventListener('abort', cancel, { once: true });
  call.on('status', (/** @type {grpc.StatusObject} */ status) => {
    signal?.removeEventListener('abort', cancel);
    const requestId = status.metadata && firstText(status.metadata, REQUEST_ID_KEY);
    if (requestId && onRequestId) onRequestId(requestId);
  });
}

/**
 * The SwitchboardError for what grpc-js failed a call with.
 * @param {unknown} err
 * @param {CallOptions} options
 */
function failure(err, { signal }) {
  return SwitchboardError.fromServiceError(err, signal?.aborted ? signal.reason : undefined);
}

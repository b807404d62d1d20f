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
    /**
     * @param {string} target host:port of the gateway's gRPC listener
     * @param {string} apiKey sent as `authorization: Bearer <key>`
     * @param {ClientOptions} [options]
     */
    constructor(target: string, apiKey: string, options?: ClientOptions);
    /** Closes the channel. */
    close(): void;
    /**
     * A client for `service` on this channel.
     * @template {GenServiceMethods} T
     * @param {GenService<T>} service a generated service descriptor (`AdminService`)
     * @returns {ServiceClient<T>}
     */
    service<T extends GenServiceMethods>(service: GenService<T>): ServiceClient<T>;
    /**
     * One request, one response.
     * @param {DescMethod} method
     * @param {unknown} request
     * @param {CallOptions} [options]
     * @returns {Promise<any>}
     */
    unary(method: DescMethod, request: unknown, options?: CallOptions): Promise<any>;
    /**
     * One request, a stream of responses; leaving the loop early cancels the call.
     * @param {DescMethod} method
     * @param {unknown} request
     * @param {CallOptions} [options]
     * @returns {AsyncGenerator<any, void, undefined>}
     */
    serverStream(method: DescMethod, request: unknown, options?: CallOptions): AsyncGenerator<any, void, undefined>;
    /**
     * A stream each way: `requests` is written as it yields (then the client half-closes), the
     * responses are yielded as they arrive; leaving the loop early cancels the call.
     * @param {DescMethod} method
     * @param {AsyncIterable<unknown> | Iterable<unknown>} requests
     * @param {CallOptions} [options]
     * @returns {AsyncGenerator<any, void, undefined>}
     */
    bidiStream(method: DescMethod, requests: AsyncIterable<unknown> | Iterable<unknown>, options?: CallOptions): AsyncGenerator<any, void, undefined>;
    #private;
}
/**
 * Per-call options (every method takes them as its last argument).
 */
export type CallOptions = {
    /**
     * the call's deadline in milliseconds (default: the client's);
     * past it the call fails with DEADLINE_EXCEEDED
     */
    timeoutMs?: number | undefined;
    /**
     * sent as `x-request-id`; the gateway uses it (otherwise it
     * assigns one) and returns it in the call's trailing metadata
     */
    requestId?: string | undefined;
    /**
     * cancels the call: it then fails with CANCELLED (the
     * signal's reason as the error's `cause`) and the gateway stops the upstream request
     */
    signal?: AbortSignal | undefined;
    /**
     * called with the call's `x-request-id`
     * when it ends, successful or not
     */
    onRequestId?: ((requestId: string) => void) | undefined;
};
/**
 * How the client connects.
 */
export type ClientOptions = {
    /**
     * TLS with the system roots (ignored when `credentials` is given)
     */
    secure?: boolean | undefined;
    /**
     * any grpc-js channel credentials
     */
    credentials?: grpc.ChannelCredentials | undefined;
    /**
     * default deadline of every call, in milliseconds
     */
    timeoutMs?: number | undefined;
    /**
     * grpc-js channel options
     */
    channelOptions?: grpc.ChannelOptions | undefined;
};
/**
 * A typed client for one generated service: one method per RPC, named by its `localName`
 * (`CreateKey` → `createKey`). Unary calls return a Promise of the response; server-streaming
 * calls an async generator of responses; bidirectional calls take an (async) iterable of
 * requests and return an async generator of responses. Requests are message init objects
 * (plain objects with the generated field names) or messages.
 */
export type ServiceClient<T extends GenServiceMethods> = { [K in keyof T]: T[K]["methodKind"] extends "unary" ? (request: MessageInitShape<T[K]["input"]>, options?: CallOptions) => Promise<MessageShape<T[K]["output"]>> : T[K]["methodKind"] extends "server_streaming" ? (request: MessageInitShape<T[K]["input"]>, options?: CallOptions) => AsyncGenerator<MessageShape<T[K]["output"]>, void, undefined> : T[K]["methodKind"] extends "bidi_streaming" ? (requests: AsyncIterable<MessageInitShape<T[K]["input"]>> | Iterable<MessageInitShape<T[K]["input"]>>, options?: CallOptions) => AsyncGenerator<MessageShape<T[K]["output"]>, void, undefined> : never; };
/**
 * The methods table of a generated service type (`MethodsOf<typeof AdminService>`).
 */
export type MethodsOf<S> = S extends GenService<infer T> ? T : never;
import type { GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import type { GenService } from '@bufbuild/protobuf/codegenv2';
import type { DescMethod } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { MessageShape } from '@bufbuild/protobuf';

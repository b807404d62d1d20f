/** @import { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2' */
/** @import { ChatResponse, ConverseRequestSchema, ConverseResponse, EmbedRequestSchema, EmbedResponse, Model, StoredResponse, StreamChatResponse } from '../gen/switchboard/v1/chat_pb.js' */
/** @import { MessageInitShape } from '@bufbuild/protobuf' */
/** @import { ToolFunction } from './converse.js' */
/** @import { ChatRequestLike } from './messages.js' */
/** @import { CallOptions, ClientOptions, MethodsOf, ServiceClient } from './rpc.js' */
/**
 * Options of a Converse call: the local tools by name, and the call's options (its deadline
 * bounds the whole conversation, tool execution included).
 * @typedef {CallOptions & { tools: Record<string, ToolFunction> }} ConverseOptions
 */
/**
 * Chat, streaming chat, the Converse tool loop and model listing; `admin` for key management
 * (with the master key). Failed calls reject with a SwitchboardError.
 */
export class SwitchboardClient {
    /**
     * @param {string} target host:port of the gateway's gRPC listener
     * @param {string} apiKey a gateway key (the master key for `admin`), sent as
     *   `authorization: Bearer <key>`
     * @param {ClientOptions} [options]
     */
    constructor(target: string, apiKey: string, options?: ClientOptions);
    target: string;
    /**
     * AdminService, one method per RPC (`createKey`, `listKeys`, `revokeKey`, ...), typed from
     * the generated descriptor; needs the master key.
     * @type {ServiceClient<MethodsOf<typeof AdminService>>}
     */
    admin: ServiceClient<MethodsOf<typeof AdminService>>;
    /**
     * A typed client for any generated service on this client's channel and key.
     * @template {GenServiceMethods} T
     * @param {GenService<T>} service
     */
    service<T extends GenServiceMethods>(service: GenService<T>): ServiceClient<T>;
    /**
     * One completion; `messages` may hold plain strings (user messages).
     * @param {ChatRequestLike} request
     * @param {CallOptions} [options]
     * @returns {Promise<ChatResponse>}
     */
    chat(request: ChatRequestLike, options?: CallOptions): Promise<ChatResponse>;
    /**
     * Frames of one completion: start, deltas (text, tool call, reasoning), end (usage, cost,
     * route). Leaving the loop early (break, throw, AbortSignal) cancels the call.
     * @param {ChatRequestLike} request
     * @param {CallOptions} [options]
     * @returns {AsyncGenerator<StreamChatResponse, void, undefined>}
     */
    streamChat(request: ChatRequestLike, options?: CallOptions): AsyncGenerator<StreamChatResponse, void, undefined>;
    /**
     * The tool-call loop over one Converse stream: yields every server event (each turn's
     * frames, then `toolCallsRequired` when the model asks for tools) and, when the caller asks
     * for the next event, runs the requested `tools` locally (concurrently; a failure becomes an
     * `isError` result) and sends their results back. Ends after the first turn that does not
     * ask for tools; leaving the loop early cancels the call.
     * @param {ChatRequestLike} request
     * @param {ConverseOptions} options
     * @returns {AsyncGenerator<ConverseResponse, void, undefined>}
     */
    converse(request: ChatRequestLike, options: ConverseOptions): AsyncGenerator<ConverseResponse, void, undefined>;
    /**
     * `converse` run to the end: the final text, every turn's usage and cost (and their sums),
     * and each tool call with the result sent back.
     * @param {ChatRequestLike} request
     * @param {ConverseOptions} options
     * @returns {Promise<ConverseResult>}
     */
    converseResult(request: ChatRequestLike, options: ConverseOptions): Promise<ConverseResult>;
    /**
     * Every model and route the gateway serves.
     * @param {CallOptions} [options]
     * @returns {Promise<Model[]>}
     */
    listModels(options?: CallOptions): Promise<Model[]>;
    /**
     * Vectors for `inputs` (plain strings are text inputs; `{ tokens: [ids] }` token arrays for
     * upstreams that take them), in input order, with usage, cost and route.
     * @param {Omit<MessageInitShape<typeof EmbedRequestSchema>, 'inputs' | '$typeName'> & { inputs: (string | { tokens: (number | bigint)[] })[] }} request
     * @param {CallOptions} [options]
     * @returns {Promise<EmbedResponse>}
     */
    embed({ inputs, ...rest }: Omit<MessageInitShape<typeof EmbedRequestSchema>, "inputs" | "$typeName"> & {
        inputs: (string | {
            tokens: (number | bigint)[];
        })[];
    }, options?: CallOptions): Promise<EmbedResponse>;
    /**
     * A response stored by a request with `store: true` (only the key that made it sees it);
     * rejects with NOT_FOUND otherwise.
     * @param {string} id the `responseId` of the stored ChatResponse
     * @param {CallOptions} [options]
     * @returns {Promise<StoredResponse | undefined>}
     */
    getStoredResponse(id: string, options?: CallOptions): Promise<StoredResponse | undefined>;
    /**
     * Deletes a stored response of this key; rejects with NOT_FOUND when there is none.
     * @param {string} id
     * @param {CallOptions} [options]
     * @returns {Promise<string>} the deleted id
     */
    deleteStoredResponse(id: string, options?: CallOptions): Promise<string>;
    /** Closes the channel (in-flight calls are cancelled). */
    close(): void;
    #private;
}
/**
 * Options of a Converse call: the local tools by name, and the call's options (its deadline
 * bounds the whole conversation, tool execution included).
 */
export type ConverseOptions = CallOptions & {
    tools: Record<string, ToolFunction>;
};
import { AdminService } from '../gen/switchboard/v1/admin_pb.js';
import type { MethodsOf } from './rpc.js';
import type { ServiceClient } from './rpc.js';
import type { GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import type { GenService } from '@bufbuild/protobuf/codegenv2';
import type { ChatRequestLike } from './messages.js';
import type { CallOptions } from './rpc.js';
import type { ChatResponse } from '../gen/switchboard/v1/chat_pb.js';
import type { StreamChatResponse } from '../gen/switchboard/v1/chat_pb.js';
import type { ConverseResponse } from '../gen/switchboard/v1/chat_pb.js';
import { ConverseResult } from './converse.js';
import type { Model } from '../gen/switchboard/v1/chat_pb.js';
import type { EmbedRequestSchema } from '../gen/switchboard/v1/chat_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { EmbedResponse } from '../gen/switchboard/v1/chat_pb.js';
import type { StoredResponse } from '../gen/switchboard/v1/chat_pb.js';
import type { ClientOptions } from './rpc.js';
import type { ToolFunction } from './converse.js';

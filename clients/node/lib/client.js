/**
 * SwitchboardClient: the switchboard.v1 ChatService and AdminService over one @grpc/grpc-js
 * channel, on the types protoc-gen-es generated from proto/ (mirrors switchboard_client).
 */

import { AdminService } from '../gen/switchboard/v1/admin_pb.js';
import { ChatService } from '../gen/switchboard/v1/chat_pb.js';
import { ConverseResult, Outbox, runTools } from './converse.js';
import { chatRequest } from './messages.js';
import { Transport } from './rpc.js';

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
  #transport;
  /** @type {ServiceClient<MethodsOf<typeof ChatService>>} */
  #chat;

  /**
   * @param {string} target host:port of the gateway's gRPC listener
   * @param {string} apiKey a gateway key (the master key for `admin`), sent as
   *   `authorization: Bearer <key>`
   * @param {ClientOptions} [options]
   */
  constructor(target, apiKey, options = {}) {
    this.target = target;
    this.#transport = new Transport(target, apiKey, options);
    this.#chat = this.#transport.service(ChatService);
    /**
     * AdminService, one method per RPC (`createKey`, `listKeys`, `revokeKey`, ...), typed from
     * the generated descriptor; needs the master key.
     * @type {ServiceClient<MethodsOf<typeof AdminService>>}
     */
    this.admin = this.#transport.service(AdminService);
  }

  /**
   * A typed client for any generated service on this client's channel and key.
   * @template {GenServiceMethods} T
   * @param {GenService<T>} service
   */
  service(service) {
    return this.#transport.service(service);
  }

  /**
   * One completion; `messages` may hold plain strings (user messages).
   * @param {ChatRequestLike} request
   * @param {CallOptions} [options]
   * @returns {Promise<ChatResponse>}
   */
  chat(request, options) {
    return this.#chat.chat(chatRequest(request), options);
  }

  /**
   * Frames of one completion: start, deltas (text, tool call, reasoning), end (usage, cost,
   * route). Leaving the loop early (break, throw, AbortSignal) cancels the call.
   * @param {ChatRequestLike} request
   * @param {CallOptions} [options]
   * @returns {AsyncGenerator<StreamChatResponse, void, undefined>}
   */
  async *streamChat(request, options) {
    yield* this.#chat.streamChat({ chat: chatRequest(request) }, options);
  }

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
  converse(request, options) {
    return this.#converse(request, options, null);
  }

  /**
   * `converse` run to the end: the final text, every turn's usage and cost (and their sums),
   * and each tool call with the result sent back.
   * @param {ChatRequestLike} request
   * @param {ConverseOptions} options
   * @returns {Promise<ConverseResult>}
   */
  async converseResult(request, options) {
    const result = new ConverseResult();
    for await (const event of this.#converse(request, options, result)) result.add(event);
    return result;
  }

  /**
   * @param {ChatRequestLike} request
   * @param {ConverseOptions} options
   * @param {ConverseResult | null} record
   * @returns {AsyncGenerator<ConverseResponse, void, undefined>}
   */
  async *#converse(request, { tools, ...options }, record) {
    if (tools === null || typeof tools !== 'object') {
      throw new TypeError('converse needs { tools: { name: function } }');
    }
    /** @type {Outbox<MessageInitShape<typeof ConverseRequestSchema>>} */
    const outbox = new Outbox();
    outbox.push({ event: { case: 'start', value: chatRequest(request) } });
    try {
      for await (const event of this.#chat.converse(outbox, options)) {
        yield event;
        if (event.event.case === 'toolCallsRequired') {
          const calls = event.event.value.toolCalls;
          const results = await runTools(tools, calls);
          record?.toolCalls.push(...calls.map((call, i) => ({ call, result: results[i] })));
          outbox.push({ event: { case: 'toolResults', value: { results } } });
        }
      }
    } finally {
      outbox.close();
    }
  }

  /**
   * Every model and route the gateway serves.
   * @param {CallOptions} [options]
   * @returns {Promise<Model[]>}
   */
  async listModels(options) {
    return (await this.#chat.listModels({}, options)).models;
  }

  /**
   * Vectors for `inputs` (plain strings are text inputs; `{ tokens: [ids] }` token arrays for
   * upstreams that take them), in input order, with usage, cost and route.
   * @param {Omit<MessageInitShape<typeof EmbedRequestSchema>, 'inputs' | '$typeName'> & { inputs: (string | { tokens: (number | bigint)[] })[] }} request
   * @param {CallOptions} [options]
   * @returns {Promise<EmbedResponse>}
   */
  embed({ inputs, ...rest }, options) {
    const wire = inputs.map((input) =>
      typeof input === 'string'
        ? { input: { case: /** @type {const} */ ('text'), value: input } }
        : {
            input: {
              case: /** @type {const} */ ('tokens'),
              value: { ids: input.tokens.map((id) => BigInt(id)) },
            },
          },
    );
    return this.#chat.embed({ ...rest, inputs: wire }, options);
  }

  /**
   * A response stored by a request with `store: true` (only the key that made it sees it);
   * rejects with NOT_FOUND otherwise.
   * @param {string} id the `responseId` of the stored ChatResponse
   * @param {CallOptions} [options]
   * @returns {Promise<StoredResponse | undefined>}
   */
  async getStoredResponse(id, options) {
    return (await this.#chat.getStoredResponse({ id }, options)).response;
  }

  /**
   * Deletes a stored response of this key; rejects with NOT_FOUND when there is none.
   * @param {string} id
   * @param {CallOptions} [options]
   * @returns {Promise<string>} the deleted id
   */
  async deleteStoredResponse(id, options) {
    return (await this.#chat.deleteStoredResponse({ id }, options)).id;
  }

  /** Closes the channel (in-flight calls are cancelled). */
  close() {
    this.#transport.close();
  }
}

// Types for the Switchboard Node client. Field names are the .proto names (snake_case); enums
// are their names; int64 fields are numbers. Only the commonly used shapes are spelled out.
import type { ChannelCredentials, ChannelOptions, status as GrpcStatus } from '@grpc/grpc-js';

export type Role = 'ROLE_SYSTEM' | 'ROLE_DEVELOPER' | 'ROLE_USER' | 'ROLE_ASSISTANT' | 'ROLE_TOOL';
export type FinishReason =
  | 'FINISH_REASON_UNSPECIFIED'
  | 'FINISH_REASON_STOP'
  | 'FINISH_REASON_LENGTH'
  | 'FINISH_REASON_TOOL_CALLS'
  | 'FINISH_REASON_CONTENT_FILTER';

/** google.protobuf.Struct as proto-loader represents it; build one with struct(). */
export interface Struct {
  fields: Record<string, unknown>;
}

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text exactly as the model produced it. */
  arguments: string;
  signature?: string;
}

export interface ToolResult {
  tool_call_id: string;
  content: string;
  is_error?: boolean;
  name?: string;
}

/** switchboard.v1.ContentPart: one of these is set; `part` names it on responses. */
export interface ContentPart {
  part?: 'text' | 'image' | 'tool_call' | 'tool_result' | 'reasoning';
  text?: string;
  image?: { url?: string; data?: Uint8Array; media_type?: string; detail?: string };
  tool_call?: ToolCall;
  tool_result?: ToolResult;
  reasoning?: { text?: string; signature?: string; redacted_data?: string };
}

export interface Message {
  role: Role | number;
  content: ContentPart[];
  name?: string;
  refusal?: string;
}

export interface Tool {
  name: string;
  description?: string;
  parameters?: Struct;
  strict?: boolean;
}

/** switchboard.v1.ChatRequest; `messages` may hold plain strings (user messages). */
export interface ChatRequest {
  model: string;
  messages: Array<Message | string>;
  tools?: Tool[];
  tool_choice?: { mode?: string; function_name?: string };
  parallel_tool_calls?: boolean;
  response_format?: { type?: string; json_schema?: { name: string; schema?: Struct } };
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  stop?: string[];
  seed?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  n?: number;
  user?: string;
  passthrough?: Struct;
  routing?: { strategy?: string };
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  cache_write_input_tokens: number;
  reasoning_tokens: number;
}

export interface Cost {
  input_usd: number;
  output_usd: number;
  cached_input_usd: number;
  cache_write_usd: number;
  total_usd: number;
}

export interface Attempt {
  provider: string;
  model: string;
  deployment: string;
  outcome: string;
  http_status: number;
  error_reason: string;
  latency_ms: number;
}

export interface RouteInfo {
  route: string;
  provider: string;
  model: string;
  deployment: string;
  strategy: string;
  attempts: Attempt[];
}

export interface ChatResponse {
  id: string;
  model: string;
  message: Message & { content: ContentPart[] };
  finish_reason: FinishReason;
  usage: Usage;
  cost: Cost;
  route: RouteInfo;
  created: number;
}

/** switchboard.v1.StreamChatResponse: `frame` names the member that is set. */
export type StreamFrame =
  | { frame: 'start'; start: { id: string; model: string; created: number; route: RouteInfo } }
  | { frame: 'text'; text: { text: string } }
  | { frame: 'reasoning'; reasoning: { text: string; signature: string } }
  | {
      frame: 'tool_call';
      tool_call: { index: number; id: string; name: string; arguments: string; signature: string };
    }
  | {
      frame: 'end';
      end: {
        id: string;
        finish_reason: FinishReason;
        usage: Usage;
        cost: Cost;
        route: RouteInfo;
        model: string;
        created: number;
      };
    };

export interface Model {
  id: string;
  provider: string;
  demo: boolean;
  route: boolean;
  pricing: {
    input_per_mtok: number;
    output_per_mtok: number;
    cached_input_per_mtok: number;
    cache_write_per_mtok: number;
  } | null;
  description: string;
}

export interface ClientOptions {
  /** TLS with the system roots (ignored when `credentials` is given). */
  secure?: boolean;
  credentials?: ChannelCredentials;
  /** Default per-call deadline in milliseconds. */
  timeoutMs?: number;
  channelOptions?: ChannelOptions;
  /** Directory holding switchboard/v1/*.proto (default: the repository's proto/). */
  protoDir?: string;
}

export interface CallOptions {
  timeoutMs?: number;
  /** Sent as x-request-id. */
  requestId?: string;
  signal?: AbortSignal;
}

/** A failed call, decoded from google.rpc.Status in grpc-status-details-bin. */
export class SwitchboardError extends Error {
  /** Numeric gRPC status code (grpc.status). */
  code: number;
  /** e.g. "NOT_FOUND". */
  codeName: string;
  /** ErrorInfo.reason, e.g. "MODEL_NOT_FOUND"; "" when the status had no details. */
  reason: string;
  domain: string;
  metadata: Record<string, string>;
  /** Seconds to wait before retrying (RetryInfo), or null. */
  retryAfter: number | null;
  fieldViolations: Array<{ field: string; description: string }>;
  quotaViolations: Array<{ subject: string; description: string }>;
  requestId: string | null;
  toJSON(): Record<string, unknown>;
  static fromServiceError(err: unknown): SwitchboardError;
}

export class SwitchboardClient {
  constructor(target: string, apiKey: string, options?: ClientOptions);
  readonly target: string;
  chat(request: ChatRequest, options?: CallOptions): Promise<ChatResponse>;
  streamChat(request: ChatRequest, options?: CallOptions): AsyncGenerator<StreamFrame, void>;
  listModels(options?: CallOptions): Promise<Model[]>;
  close(): void;
}

export function message(role: string, text: string): Message;
export function user(text: string): Message;
export function system(text: string): Message;
export function toolResult(toolCallId: string, content: string, options?: { isError?: boolean }): Message;
export function struct(object: Record<string, unknown>): Struct;
export function responseText(response: ChatResponse): string;
export const status: typeof GrpcStatus;
